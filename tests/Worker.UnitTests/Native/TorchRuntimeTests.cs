using Orchestrator.Worker.Native;
using TorchSharp;

namespace Orchestrator.Worker.UnitTests.Native;

public class TorchRuntimeTests
{
    [Fact]
    public void Libtorch_loads_from_the_build_output_and_computes()
    {
        TorchRuntime.Initialize();
        using var a = torch.ones(2, 3);
        using var b = torch.full(3, 4, 2.0f);
        using var c = a.matmul(b);
        Assert.Equal(6.0f, c[1, 3].ToSingle());
        Assert.Equal("bundled", TorchRuntime.LoadedFrom);
    }

    [Fact]
    public void Auto_device_is_cpu_without_cuda_and_cuda_request_fails_clearly()
    {
        Assert.Equal(DeviceType.CPU, TorchRuntime.ResolveDevice("auto").type);
        Assert.Equal(DeviceType.CPU, TorchRuntime.ResolveDevice("cpu").type);
        var e = Assert.Throws<InvalidOperationException>(() => TorchRuntime.ResolveDevice("cuda"));
        Assert.Contains("CUDA is not available", e.Message);
        Assert.Throws<ArgumentException>(() => TorchRuntime.ResolveDevice("tpu"));
    }
}

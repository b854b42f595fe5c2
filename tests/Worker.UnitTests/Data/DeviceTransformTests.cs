using Orchestrator.Worker.Data;
using Orchestrator.Worker.Native;
using Orchestrator.Worker.UnitTests.Support;
using TorchSharp;

namespace Orchestrator.Worker.UnitTests.Data;

[Collection(SerialTorchCollection.Name)]
public sealed class DeviceTransformTests
{
    public DeviceTransformTests() => TorchRuntime.Initialize();

    [Fact]
    public void On_the_cpu_batches_skip_pinned_memory_and_arrive_as_normalised_floats_with_their_labels()
    {
        var data = TinyData.Quadrants(8, 4);
        using var loader = new BatchLoader(data, new BatchPlan(8, Shuffle: false, DropLast: false, Seed: 0));
        var batch = loader.Epoch(1, CancellationToken.None).First();
        using var transform = new DeviceTransform(new DeviceAugment([0.5f], [0.25f]), torch.CPU);
        // Pinned staging is for CUDA: a CPU build of libtorch has no pinned allocator.
        Assert.False(transform.PinsHostMemory);
        using var scope = torch.NewDisposeScope();
        var (x, y) = transform.Apply(batch, train: false);
        Assert.Equal(new long[] { 8, 1, 16, 16 }, x.shape);
        Assert.Equal(torch.ScalarType.Float32, x.dtype);
        Assert.Equal(batch.Labels.Take(8), y.data<long>().ToArray());
        var first = batch.Images[0];
        Assert.Equal((first / 255f - 0.5f) / 0.25f, x[0, 0, 0, 0].ToSingle(), 5);
    }
}

using Orchestrator.Worker.Host;

namespace Orchestrator.Worker.UnitTests.Host;

/// <summary>orch worker --devices: what each form offers, and one clear line for a bad value.</summary>
public sealed class DeviceInventoryTests
{
    [Theory]
    [InlineData(null)]
    [InlineData("auto")]
    [InlineData(" AUTO ")]
    public void Auto_or_nothing_means_detect(string? value) => Assert.Null(DeviceInventory.Parse(value));

    [Fact]
    public void Cpu_offers_no_GPU() => Assert.Empty(DeviceInventory.Parse("cpu")!);

    [Fact]
    public void Cuda_N_offers_GPUs_zero_to_N_minus_one_of_unknown_name()
    {
        var gpus = DeviceInventory.Parse("cuda:3")!;

        Assert.Equal([new WorkerGpu(0, "", 0), new WorkerGpu(1, "", 0), new WorkerGpu(2, "", 0)], gpus);
    }

    [Fact]
    public void Name_and_memory_apply_to_every_GPU()
    {
        var gpus = DeviceInventory.Parse("cuda:8:H200:141GB")!;

        Assert.Equal(8, gpus.Count);
        Assert.All(gpus, g => Assert.Equal(("H200", 141_000_000_000L), (g.Name, g.MemoryBytes)));
        Assert.Equal(Enumerable.Range(0, 8), gpus.Select(g => g.Index));
        Assert.Equal(new WorkerGpu(0, "NVIDIA A10", 0), DeviceInventory.Parse("cuda:1:NVIDIA A10")![0]);
    }

    [Theory]
    [InlineData("80GB", 80_000_000_000L)]
    [InlineData("24GiB", 24L << 30)]
    [InlineData("1.5 TB", 1_500_000_000_000L)]
    [InlineData("512m", 512_000_000L)]
    [InlineData("1073741824", 1L << 30)]
    public void Memory_sizes_take_decimal_and_binary_units(string text, long bytes)
    {
        Assert.True(DeviceInventory.TryParseBytes(text, out var parsed));
        Assert.Equal(bytes, parsed);
    }

    [Theory]
    [InlineData("gpu", "")]
    [InlineData("cuda", "")]
    [InlineData("cuda:", "")]
    [InlineData("cuda:two", "")]
    [InlineData("cuda:0", ": the GPU count must be 1 to 64")]
    [InlineData("cuda:65", ": the GPU count must be 1 to 64")]
    [InlineData("cuda:2::80GB", ": the GPU name is empty")]
    [InlineData("cuda:2:H100:lots", ": memory 'lots' is not a size such as 80GB, 141GB or 24GiB")]
    [InlineData("cuda:2:H100:80XB", ": memory '80XB' is not a size such as 80GB, 141GB or 24GiB")]
    [InlineData("cuda:2:H100:80GB:extra", "")]
    public void A_bad_value_is_one_line_naming_it_and_the_expected_forms(string value, string detail)
    {
        var e = Assert.Throws<ArgumentException>(() => DeviceInventory.Parse(value));

        Assert.Equal($"--devices {value}: expected auto, cpu, cuda:N or cuda:N:NAME[:MEMORY] (e.g. cuda:8:H200:141GB){detail}", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Theory]
    [InlineData("auto", "cuda:3", "cuda:3")]
    [InlineData("cuda", "cuda:1", "cuda:1")]
    [InlineData("auto", "", "auto")]
    [InlineData("cpu", "cuda:3", "cpu")]
    [InlineData(" CPU ", "cuda:0", " CPU ")]
    public void A_rank_trains_on_its_slots_device_unless_the_worker_is_forced_to_the_CPU(string workerDevice, string assigned, string expected) =>
        Assert.Equal(expected, DeviceInventory.TrainingDevice(workerDevice, assigned));
}

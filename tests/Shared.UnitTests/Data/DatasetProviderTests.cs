using Orchestrator.Data;
using Orchestrator.Sdk;
using Orchestrator.TestSupport;
using Orchestrator.Trials;

namespace Orchestrator.Data.Tests;

/// <summary>A data set from an <see cref="IDatasetProvider"/> (a plug-in's) takes the built-ins' path: limits, hold-out, statistics.</summary>
public sealed class DatasetProviderTests
{
    private sealed class Provider(DatasetSource source) : IDatasetProvider
    {
        public DatasetRequest? Seen { get; private set; }

        public Task<DatasetSource> OpenAsync(DatasetRequest request, CancellationToken cancellationToken)
        {
            Seen = request;
            return Task.FromResult(source);
        }
    }

    private static InMemoryImageDataset Images(int count, ImageShape shape, string name) =>
        new(name, shape, new byte[count * shape.Size], [.. Enumerable.Range(0, count).Select(i => i % 3)], ["a", "b", "c"]);

    [Fact]
    public async Task Limits_and_args_apply_to_a_providers_data_and_missing_statistics_default_to_one_half()
    {
        var shape = new ImageShape(2, 4, 4);
        var provider = new Provider(new DatasetSource(Images(50, shape, "t"), Images(20, shape, "v")));
        var spec = new DataSpec { Name = "csv", Plugin = "p.dll", Dir = "somewhere", LimitTrain = 10, LimitTest = 5, Args = new() { ["k"] = "7" } };

        var splits = await DatasetLoader.LoadAsync(provider, spec, 3, CancellationToken.None).DefaultTimeout();

        Assert.Equal((10, 5), (splits.Train.Count, splits.Validation.Count));
        Assert.Equal(("csv", shape, 3), (splits.Info.Name, splits.Info.Shape, splits.Info.NumClasses));
        Assert.Equal([0.5f, 0.5f], splits.Info.Mean);
        Assert.Equal([0.5f, 0.5f], splits.Info.Std);
        Assert.Equal(("somewhere", 3, 7), (provider.Seen!.Dir, provider.Seen.Seed, provider.Seen.Args.GetInt("k", 0)));
    }

    [Fact]
    public async Task A_provider_without_a_validation_split_gets_a_seeded_hold_out()
    {
        var provider = new Provider(new DatasetSource(Images(100, new ImageShape(1, 2, 2), "t"), null, [0.1f], [0.2f]));
        var splits = await DatasetLoader.LoadAsync(provider, new DataSpec { Name = "x", Plugin = "p.dll" }, 1, CancellationToken.None).DefaultTimeout();
        Assert.Equal((90, 10), (splits.Train.Count, splits.Validation.Count));
        Assert.Equal([0.1f], splits.Info.Mean);
    }

    [Fact]
    public async Task Statistics_that_do_not_match_the_channels_are_refused_naming_the_data_set()
    {
        var provider = new Provider(new DatasetSource(Images(10, new ImageShape(3, 2, 2), "t"), null, [0.1f], [0.2f, 0.2f, 0.2f]));
        var e = await Assert.ThrowsAsync<InvalidDataException>(() => DatasetLoader.LoadAsync(provider, new DataSpec { Name = "x", Plugin = "p.dll" }, 1, CancellationToken.None)).DefaultTimeout();
        Assert.Equal("data set 'x': 1 mean values given for 3-channel images", e.Message);
    }

    [Fact]
    public async Task A_plugin_data_set_is_not_loaded_by_the_built_in_loader()
    {
        var e = await Assert.ThrowsAsync<DatasetNotFoundException>(() => DatasetLoader.LoadAsync(new DataSpec { Name = "x", Plugin = "p.dll" }, 1, new DatasetResolver(), null, CancellationToken.None)).DefaultTimeout();
        Assert.Contains("comes from the plug-in p.dll, which was not loaded", e.Message);
    }
}

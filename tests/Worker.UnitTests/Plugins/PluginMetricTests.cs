using Orchestrator.Trials;
using Orchestrator.Worker.Plugins;
using Orchestrator.Worker.Training;
using Orchestrator.Worker.UnitTests.Support;
using TorchSharp;

namespace Orchestrator.Worker.UnitTests.Plugins;

/// <summary>A plug-in's extra validation metric is computed from each epoch's evaluation and reported with it.</summary>
[Collection(SerialTorchCollection.Name)]
public sealed class PluginMetricTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("orch-plugin-metric-").FullName;
    private readonly string _plugin;

    public PluginMetricTests() => _plugin = PluginCompiler.Compile(Path.Combine(_dir, "p"), "Test.Plugin", PluginCompiler.Source);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private TrialSpec Spec(string metric) => new()
    {
        Epochs = 1,
        BatchSize = 32,
        Model = new ModelSpec { Name = "simple-cnn" },
        Metrics = [new MetricPluginSpec { Plugin = _plugin, Name = metric }],
        Checkpoint = new CheckpointSpec { KeepBest = false },
    };

    [Fact]
    public void An_extra_metric_is_reported_after_each_epoch_from_the_evaluation()
    {
        var spec = Spec("error-rate");
        using var plugins = TrialPlugins.Load(spec);
        using var session = new TrainingSession(spec, TinyData.Splits(128, 64), torch.CPU, Path.Combine(_dir, "run"), plugins: plugins);
        var result = session.Run();

        var epoch = Assert.Single(session.History);
        Assert.Equal(1 - epoch.ValAccuracy, epoch.PluginMetrics!["error-rate"], 9);
        Assert.Equal(epoch.PluginMetrics, result.Last.PluginMetrics);
    }

    [Fact]
    public void A_plugins_model_trains_with_a_mixed_precision_compute_copy_built_through_the_plugin()
    {
        var spec = Spec("error-rate");
        spec.Model = new ModelSpec { Plugin = _plugin, Name = "good-net", Args = new() { ["hidden"] = "16" } };
        spec.Precision = "bf16";
        using var plugins = TrialPlugins.Load(spec);
        using var session = new TrainingSession(spec, TinyData.Splits(128, 64), torch.CPU, Path.Combine(_dir, "bf16"), plugins: plugins);
        var epoch = session.Run().Last;
        Assert.True(double.IsFinite(epoch.TrainLoss) && epoch.ValAccuracy > 0, $"loss {epoch.TrainLoss}, accuracy {epoch.ValAccuracy}");
        Assert.Equal(1 - epoch.ValAccuracy, epoch.PluginMetrics!["error-rate"], 9);
    }

    [Fact]
    public void A_metric_that_throws_fails_the_run_with_the_plugins_message()
    {
        var spec = Spec("broken-metric");
        using var plugins = TrialPlugins.Load(spec);
        using var session = new TrainingSession(spec, TinyData.Splits(64, 32), torch.CPU, Path.Combine(_dir, "run"), plugins: plugins);
        var e = Assert.Throws<PluginException>(() => session.Run());
        Assert.Equal($"plug-in {_plugin}: metric 'broken-metric' threw DivideByZeroException: no positives", e.Message);
    }
}

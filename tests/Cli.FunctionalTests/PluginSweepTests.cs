namespace Orchestrator.Cli.FunctionalTests;

/// <summary>A sweep over the example plug-in's model and data set, run by orch local, and a bad plug-in refused before it starts.</summary>
[Collection(EndToEnd.Name)]
public sealed class PluginSweepTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("orch-plugin-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Orch_local_sweeps_the_example_plugins_model_args_and_its_best_checkpoint_evaluates_to_the_reported_metric()
    {
        File.WriteAllText(Path.Combine(_dir, "sweep.yaml"), ExamplePlugin.Prepare(_dir));
        var r = OrchProcess.Run(_dir, "local", "sweep.yaml", "--workers", "2", "--state-dir", "state", "--json");
        Assert.True(r.ExitCode == 0, r.ToString());
        var summary = r.LastJson;
        Assert.Equal(2, summary.GetProperty("trials_completed").GetInt32());
        // One epoch on 2,000 images: well above chance (0.1) for ten classes.
        var best = summary.GetProperty("best_metric").GetDouble();
        Assert.True(best > 0.4, $"best accuracy {best}");
        // Both values of the searched plug-in argument were trained.
        Assert.Contains("\"model.args.width\":\"8\"", r.StdOut, StringComparison.Ordinal);
        Assert.Contains("\"model.args.width\":\"16\"", r.StdOut, StringComparison.Ordinal);

        // The plug-in's metric was computed with every evaluation (the worker's metrics.jsonl; reported as val_macro-f1).
        var metricLines = Directory.GetFiles(Path.Combine(_dir, "state"), "metrics.jsonl", SearchOption.AllDirectories);
        Assert.NotEmpty(metricLines);
        Assert.All(metricLines, f => Assert.Contains("\"macro-f1\":", File.ReadAllText(f), StringComparison.Ordinal));

        // orch eval rebuilds the model and the data set through the plug-in the checkpoint's trial names.
        var eval = OrchProcess.Run(_dir, "eval", "--checkpoint", summary.GetProperty("checkpoint").GetString()!, "--json");
        Assert.True(eval.ExitCode == 0, eval.ToString());
        Assert.Equal("csv-images", eval.LastJson.GetProperty("dataset").GetString());
        Assert.Equal(best, eval.LastJson.GetProperty("accuracy").GetDouble(), 6);
    }

    [Fact]
    public void A_name_the_plugin_does_not_export_is_refused_before_the_sweep_starts_naming_the_plugin()
    {
        var sweep = ExamplePlugin.Prepare(_dir, trainImages: 10, testImages: 10).Replace("name: tiny-net", "name: wide-net", StringComparison.Ordinal);
        File.WriteAllText(Path.Combine(_dir, "sweep.yaml"), sweep);
        var line = OrchProcess.AssertOneLineError(OrchProcess.Run(_dir, "local", "sweep.yaml", "--state-dir", "state"), 2);
        Assert.Equal("orch: error: sweep.yaml: model.plugin: plug-in plugins/MyModels.dll: exports no model 'wide-net' (it exports: tiny-net)", line);
        Assert.False(Directory.Exists(Path.Combine(_dir, "state")), "nothing was started for a refused sweep");
    }
}

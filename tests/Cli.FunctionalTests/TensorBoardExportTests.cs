using System.Globalization;
using Orchestrator.TensorBoard;
using Orchestrator.TensorBoard.Protos.HParams;
using Orchestrator.TestSupport;

namespace Orchestrator.Cli.FunctionalTests;

/// <summary>
/// `orch tensorboard` against a real coordinator (a <see cref="FinishedSweep"/>): the export is
/// read back record by record.
/// </summary>
[Collection(EndToEnd.Name)]
public sealed class TensorBoardExportTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("orch-tb-").FullName;

    private const string Sweep = """
        name: tb-export
        data: { name: fashion-mnist, limitTrain: 600, limitTest: 200 }
        model: { name: simple-cnn }
        trial: { epochs: 2, batchSize: 64 }
        parameters:
          optimizer.lr: { values: [0.02, 0.05] }
        search: { method: grid, parallelTrials: 2 }
        """;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task A_finished_sweep_exports_one_run_per_trial_with_its_epochs_and_hyperparameters()
    {
        await using var sweep = FinishedSweep.Start(_dir, Sweep);
        var sweepId = sweep.Id;
        var export = await sweep.RunAsync("tensorboard", sweepId, "--out", "tb", "--json");
        Assert.True(export.ExitCode == 0, export.ToString());
        Assert.Equal(2, export.LastJson.GetProperty("runs").GetInt32());
        Assert.Equal(4, export.LastJson.GetProperty("points").GetInt32());
        var trials = await sweep.RunAsync("trials", sweepId, "--json");
        Assert.True(trials.ExitCode == 0, trials.ToString());

        var root = Path.Combine(_dir, "tb");
        var experiment = TensorBoardEvents.HParams(TensorBoardEvents.ReadDir(root), HParamsSummaries.ExperimentTag)!.Experiment;
        var lr = Assert.Single(experiment.HparamInfos);
        Assert.Equal(("optimizer.lr", 0.02, 0.05), (lr.Name, lr.DomainInterval.MinValue, lr.DomainInterval.MaxValue));
        Assert.Contains(experiment.MetricInfos, m => m.Name.Tag == TensorBoardTags.For("val_accuracy"));

        var seen = new List<double>();
        foreach (var t in System.Text.Json.JsonDocument.Parse(trials.StdOut.Trim().Split('\n')[^1]).RootElement.EnumerateArray())
        {
            var runs = Directory.GetDirectories(root, $"trial-*-{t.GetProperty("trial").GetString()}");
            var events = TensorBoardEvents.ReadDir(Assert.Single(runs));
            var accuracy = TensorBoardEvents.Scalars(events, TensorBoardTags.For("val_accuracy"));
            Assert.Equal([1L, 2L], accuracy.Keys);
            Assert.Equal((float)t.GetProperty("metric").GetDouble(), accuracy[2]);
            Assert.Equal(2, TensorBoardEvents.Scalars(events, TensorBoardTags.For("train_loss")).Count);
            Assert.Equal(2, TensorBoardEvents.Scalars(events, TensorBoardTags.For("lr")).Count);
            var start = TensorBoardEvents.HParams(events, HParamsSummaries.SessionStartTag)!.SessionStartInfo;
            var value = start.Hparams["optimizer.lr"].NumberValue;
            Assert.Equal(double.Parse(t.GetProperty("parameters").GetProperty("optimizer.lr").GetString()!, CultureInfo.InvariantCulture), value);
            seen.Add(value);
            Assert.Equal(Status.Success, TensorBoardEvents.HParams(events, HParamsSummaries.SessionEndTag)!.SessionEndInfo.Status);
        }
        Assert.Equal([0.02, 0.05], seen.Order());

        // A second export replaces the first rather than adding a second set of files.
        var again = await sweep.RunAsync("tensorboard", sweepId, "--out", "tb");
        Assert.True(again.ExitCode == 0, again.ToString());
        Assert.Single(Directory.GetFiles(root, "events.out.tfevents.*"));

        // orch metrics: the same history, as CSV and as JSON lines, matching what the trial reported.
        var first = System.Text.Json.JsonDocument.Parse(trials.StdOut.Trim().Split('\n')[^1]).RootElement[0];
        var trialId = first.GetProperty("trial").GetString()!;
        var csv = await sweep.RunAsync("metrics", trialId, "--csv");
        Assert.True(csv.ExitCode == 0, csv.ToString());
        var rows = csv.StdOut.Trim().Split('\n');
        var header = rows[0].Split(',');
        Assert.Equal(["step", "epoch", "train_loss"], header[..3]);
        Assert.Equal(3, rows.Length); // the header and two epochs
        var valAccuracy = Array.IndexOf(header, "val_accuracy");
        Assert.Equal(first.GetProperty("metric").GetDouble(), double.Parse(rows[2].Split(',')[valAccuracy], CultureInfo.InvariantCulture));
        var lines = await sweep.RunAsync("metrics", trialId, "--json");
        Assert.True(lines.ExitCode == 0, lines.ToString());
        Assert.Equal(2, lines.LastJson.GetProperty("points").GetInt32());
        Assert.Equal(2, lines.StdOut.Trim().Split('\n').Count(l => l.Contains("\"type\":\"metric\"", StringComparison.Ordinal)));
        var table = await sweep.RunAsync("metrics", trialId);
        Assert.True(table.ExitCode == 0, table.ToString());
        Assert.Contains("val_accuracy", table.StdOut);
        Assert.Contains("not a trial id", OrchProcess.AssertOneLineError(await sweep.RunAsync("metrics", sweepId), 2));
        Assert.Contains("no trial", OrchProcess.AssertOneLineError(await sweep.RunAsync("metrics", sweepId + "-t9999"), 1));
    }

    [Fact]
    public void An_unreachable_coordinator_is_one_clear_error()
    {
        var r = OrchProcess.Run(_dir, "tensorboard", "sw-nope", "--out", "tb", "--coordinator", $"http://127.0.0.1:{RedisServer.FreePort()}");
        Assert.Contains("cannot reach the coordinator", OrchProcess.AssertOneLineError(r, 1));
    }
}

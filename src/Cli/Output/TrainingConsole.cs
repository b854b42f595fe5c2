using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Orchestrator.Data;
using Orchestrator.Trials;
using Orchestrator.Worker.Models;
using Orchestrator.Worker.Plugins;
using Orchestrator.Worker.Training;
using Spectre.Console;

namespace Orchestrator.Cli.Output;

/// <summary>
/// How `orch train` talks to the user: a live progress bar per epoch on a terminal, one plain line
/// per epoch when output is redirected, JSON lines with <c>--json</c> (the last line the summary).
/// </summary>
internal sealed class TrainingConsole(bool json) : ITrainingObserver
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;
    private readonly IAnsiConsole _err = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
    private readonly bool _live = !json && !Console.IsErrorRedirected && AnsiConsole.Profile.Capabilities.Interactive;
    private ProgressContext? _progress;
    private ProgressTask? _epochTask;
    private RunInfo? _run;
    private readonly List<string> _checkpoints = [];

    public DatasetSplits LoadData(DataSpec spec, int seed, CancellationToken ct, TrialPlugins? plugins = null)
    {
        var progress = new DownloadReporter(json ? null : _err);
        var data = (plugins ?? TrialPlugins.None).LoadData(spec, seed, progress, ct);
        if (!json)
            _err.MarkupLine($"[grey]data[/] {Markup.Escape(data.Info.Name)}: {data.Train.Count:N0} train, {data.Validation.Count:N0} validation, {data.Info.Shape} px, {data.Info.NumClasses} classes");
        return data;
    }

    public void ReportPretrained(PretrainedLoadReport report)
    {
        if (json) return;
        _err.MarkupLine($"[grey]pretrained[/] loaded {report.Loaded.Count} tensors, skipped {report.Skipped.Count}" +
                        (report.Skipped.Count > 0 ? $" ({Markup.Escape(string.Join(", ", report.Skipped.Take(4)))}{(report.Skipped.Count > 4 ? ", …" : "")})" : ""));
    }

    public TrainingResult Run(TrainingSession session, CancellationToken ct)
    {
        if (!_live) return session.Run(ct: ct);
        TrainingResult? result = null;
        _err.Progress()
            .AutoClear(false)
            .HideCompleted(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                // Training runs here, synchronously on this thread; Spectre refreshes from its own.
                _progress = ctx;
                result = session.Run(ct: ct);
            });
        return result!;
    }

    public void OnRunStart(RunInfo info)
    {
        _run = info;
        if (json) return;
        var resumed = info.StartEpoch > 0 ? $", resuming after epoch {info.StartEpoch}" : "";
        _err.MarkupLine($"[grey]train[/] {Markup.Escape(info.Model)} ({info.Parameters:N0} parameters) on {Markup.Escape(info.Device)}, {info.Epochs} epochs{resumed}; run folder {Markup.Escape(info.RunDir)}");
    }

    public void OnEpochStart(int epoch, int epochs, int batches)
    {
        if (_progress is null) return;
        _epochTask = _progress.AddTask($"epoch {epoch}/{epochs}", maxValue: batches);
    }

    public void OnBatches(BatchProgress p)
    {
        if (_epochTask is null) return;
        _epochTask.Value = p.Batch;
        _epochTask.Description = string.Format(Inv, "epoch {0}/{1}  loss {2:F4}  acc {3:F4}  {4:N0} img/s",
            p.Epoch, _run?.Epochs, p.Loss, p.Accuracy, p.ImagesPerSecond);
    }

    public void OnEpochEnd(EpochMetrics m)
    {
        if (json)
        {
            var node = JsonSerializer.SerializeToNode(m, MetricsJson.Default.EpochMetrics)!.AsObject();
            node.Insert(0, "type", "epoch");
            Console.Out.WriteLine(node.ToJsonString());
            return;
        }
        var line = TrainingLines.Epoch(m, _run?.Epochs);
        if (_epochTask is not null) _epochTask.Description = Markup.Escape(line);
        else _err.WriteLine(line);
    }

    public void OnCheckpoint(string path, CheckpointKind kind) => _checkpoints.Add($"{kind.ToString().ToLowerInvariant()}: {path}");

    public void Summary(TrainingResult r, DatasetInfo info, string? tensorBoardFile = null)
    {
        var last = r.Last;
        if (json)
        {
            var summary = new JsonObject
            {
                ["type"] = "summary",
                ["test_accuracy"] = last.ValAccuracy,
                ["test_loss"] = last.ValLoss,
                ["test_top5"] = last.ValTop5,
                ["best_accuracy"] = r.BestValAccuracy,
                ["best_epoch"] = r.BestEpoch,
                ["epochs"] = r.Epochs,
                ["seconds"] = Math.Round(r.Seconds, 3),
                [MetricNames.ImagesPerSecond] = Math.Round(last.ImagesPerSecond, 1),
                ["checkpoint"] = r.BestCheckpoint,
                ["last_checkpoint"] = r.LastCheckpoint,
                ["run_dir"] = r.RunDir,
            };
            if (tensorBoardFile is not null) summary["tensorboard"] = Path.GetDirectoryName(Path.GetFullPath(tensorBoardFile));
            Console.Out.WriteLine(summary.ToJsonString());
            return;
        }
        var table = new Table().Border(TableBorder.Rounded).Title("[bold]training summary[/]");
        foreach (var h in new[] { "epoch", "train loss", "train acc", "val loss", "val acc", "top-5", "lr", "img/s", "time" })
            table.AddColumn(new TableColumn(h).RightAligned());
        foreach (var m in HistoryOf(r))
        {
            var best = m.Epoch == r.BestEpoch ? "[green]" : "";
            var end = best.Length > 0 ? "[/]" : "";
            table.AddRow(m.Epoch.ToString(Inv), F(m.TrainLoss), F(m.TrainAccuracy), F(m.ValLoss), best + F(m.ValAccuracy) + end,
                F(m.ValTop5), m.LearningRate.ToString("G3", Inv), m.ImagesPerSecond.ToString("N0", Inv), m.Seconds.ToString("F1", Inv) + "s");
        }
        _err.Write(table);
        if (info.NumClasses <= 20)
        {
            var perClass = new Table().Border(TableBorder.Simple).AddColumn("class").AddColumn(new TableColumn("accuracy").RightAligned());
            for (var c = 0; c < info.NumClasses; c++)
                perClass.AddRow(Markup.Escape(info.Classes[c]), F(last.PerClassAccuracy[c]));
            _err.Write(perClass);
        }
        _err.MarkupLine($"test accuracy [bold]{F(last.ValAccuracy)}[/] (best {F(r.BestValAccuracy)} at epoch {r.BestEpoch}), {r.Seconds:F1}s");
        foreach (var c in _checkpoints.Distinct()) _err.MarkupLine($"[grey]checkpoint[/] {Markup.Escape(c)}");
        _err.MarkupLine($"[grey]metrics[/] {Markup.Escape(Path.Combine(r.RunDir, "metrics.jsonl"))}");
        if (tensorBoardFile is not null) _err.MarkupLine($"[grey]tensorboard[/] {Markup.Escape(tensorBoardFile)}");
    }

    private static IEnumerable<EpochMetrics> HistoryOf(TrainingResult r)
    {
        var path = Path.Combine(r.RunDir, "metrics.jsonl");
        if (!File.Exists(path)) return [r.Last];
        return File.ReadLines(path)
            .Select(l => JsonSerializer.Deserialize(l, MetricsJson.Default.EpochMetrics)!)
            .GroupBy(m => m.Epoch).Select(g => g.Last()).OrderBy(m => m.Epoch);
    }

    private static string F(double x) => double.IsNaN(x) ? "-" : x.ToString("F4", Inv);

    /// <summary>Prints download progress at most every 10 %, synchronously (no thread hop).</summary>
    private sealed class DownloadReporter(IAnsiConsole? console) : IProgress<DownloadProgress>
    {
        private string? _file;
        private int _lastDecile = -1;

        public void Report(DownloadProgress value)
        {
            if (console is null) return;
            if (value.File != _file)
            {
                _file = value.File;
                _lastDecile = -1;
            }
            var decile = value.TotalBytes is > 0 ? (int)(value.Bytes * 10 / value.TotalBytes.Value) : -1;
            if (decile == _lastDecile) return;
            _lastDecile = decile;
            var size = value.TotalBytes is { } t ? $"{value.Bytes / 1e6:F1}/{t / 1e6:F1} MB" : $"{value.Bytes / 1e6:F1} MB";
            console.MarkupLine($"[grey]download[/] {Markup.Escape(value.File)} {size}");
        }
    }
}

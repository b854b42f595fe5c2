using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Orchestrator.Checkpoints;
using Orchestrator.Cli.Output;
using Orchestrator.Cli.Remote;
using Orchestrator.Protocol.V1;
using Orchestrator.Worker.Export;
using Orchestrator.Worker.Native;
using Spectre.Console;

namespace Orchestrator.Cli.Commands;

/// <summary>
/// `orch best SWEEP`: the sweep's best trial (or the K best, or one chosen trial) by its objective
/// and goal, and optionally that trial's checkpoint, converted as `orch export` does.
/// </summary>
internal static class BestCommand
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static Command Create()
    {
        var sweep = SweepCommands.SweepArgument();
        var topN = new Option<int?>("--top-n")
        {
            Description = "Show the K best trials as a table (parameters, best metric and the epoch it came from) instead of the best one. " +
                          "Every trial with a result counts, trials stopped early included.",
            HelpName = "K",
        };
        topN.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int?>() is < 1) r.AddError("--top-n must be 1 or more");
        });
        var trial = new Option<string?>("--trial")
        {
            Description = "Show (and --download) this trial of the sweep instead of the best one, e.g. sw-1a2b3c4d-t0003 (see `orch trials SWEEP`).",
            HelpName = "ID",
        };
        var download = new Option<string?>("--download") { Description = "Save the trial's checkpoint to this file: its best epoch, or its latest while it has no best one.", HelpName = "PATH" };
        var format = new Option<string?>("--format")
        {
            Description = "File format of --download: torchsharp (an orch checkpoint: orch eval and --pretrained read it), pytorch (.pt state dict for torch.load), " +
                          "safetensors, or onnx (an ONNX graph, as orch export writes it). Default: from the file's extension (.pt, .safetensors, .onnx), else torchsharp.",
        };
        format.AcceptOnlyFromAmong(["torchsharp", .. CheckpointExporter.Formats]);
        var quantize = ExportCommand.QuantizeOption();
        quantize.AcceptOnlyFromAmong([.. CheckpointExporter.QuantizeModes]);
        var calibration = ExportCommand.CalibrationImagesOption();
        var coordinator = SweepCommands.CoordinatorOption();
        var json = CommonOptions.Json();
        var command = new Command("best", "The best trial of a sweep by its objective and goal, and optionally its checkpoint.\n" +
                                          "Examples: orch best sw-1a2b3c4d --download best.pt --format pytorch\n" +
                                          "          orch best sw-1a2b3c4d --top-n 5                 (the five best, with their parameters)\n" +
                                          "          orch best sw-1a2b3c4d --trial sw-1a2b3c4d-t0003 --download t3.onnx --format onnx [--quantize int8]")
        { sweep, topN, trial, download, format, quantize, calibration, coordinator, json };
        command.Validators.Add(r =>
        {
            if (r.GetValue(topN) is not null && r.GetValue(trial) is not null) r.AddError("--top-n and --trial do not go together: --top-n lists the best trials, --trial shows one");
            if (r.GetValue(topN) is not null && r.GetValue(download) is not null) r.AddError("--download saves one trial's checkpoint: use it without --top-n (the best trial) or with --trial ID");
        });
        command.SetAction(async (parse, ct) =>
        {
            using var c = SweepCommands.Connect(parse, coordinator);
            var id = parse.GetValue(sweep)!;
            var s = await c.Client.GetSweepAsync(new GetSweepRequest { SweepId = id }, c.Call(ct));
            if (parse.GetValue(topN) is { } count) return await TopAsync(c, s, count, parse.GetValue(json), ct);

            var chosen = parse.GetValue(trial);
            if (chosen is not null && MetricsCommand.SweepOf(chosen) is { } owner && owner != id)
                throw new ArgumentException($"trial {chosen} belongs to sweep {owner}, not {id}");
            var t = await c.Client.GetBestTrialAsync(new GetBestTrialRequest { SweepId = id, TrialId = chosen ?? "" }, c.Call(ct));
            string? saved = null;
            if (parse.GetValue(download) is { } target)
            {
                var fmt = parse.GetValue(format) ?? CheckpointExporter.FormatFromExtension(target) ?? "torchsharp";
                if (parse.GetValue(quantize) is { } q && fmt != "onnx")
                    throw new ArgumentException($"--quantize {q} needs --format onnx");
                if (!t.HasCheckpoint)
                    throw new InvalidOperationException($"trial {t.Id} has no checkpoint to download ({SweepView.State(t.State)}, {t.Epoch} of {t.Epochs} epochs done)");
                saved = await DownloadAsync(c, id, t.Id, target, fmt, ct, parse.GetValue(quantize), parse.GetValue(calibration));
            }
            if (parse.GetValue(json))
            {
                var o = SweepView.Json(t);
                o["sweep"] = id;
                o["objective"] = s.ObjectiveMetric;
                o["checkpoint"] = saved;
                Console.Out.WriteLine(o.ToJsonString());
            }
            else
            {
                var heading = chosen is null ? $"best trial of {id}" : $"trial of {id}";
                AnsiConsole.MarkupLine($"{heading}: [bold]{t.Id}[/] ({SweepView.State(t.State)}) {Markup.Escape(s.ObjectiveMetric)} {SweepView.Metric(t.HasBestMetric ? t.BestMetric : null)}{EpochNote(t)}");
                foreach (var (k, v) in t.Parameters.OrderBy(p => p.Key, StringComparer.Ordinal)) AnsiConsole.MarkupLine($"  {Markup.Escape(k)} = {Markup.Escape(v)}");
                if (saved is not null) AnsiConsole.MarkupLine($"checkpoint saved to {Markup.Escape(saved)}");
            }
            return ExitCodes.Ok;
        });
        return command;
    }

    /// <summary>"t0003" for "sw-1a2b3c4d-t0003": the sweep is named under the table.</summary>
    private static string ShortId(Trial t) =>
        t.Id.StartsWith(t.SweepId + "-", StringComparison.Ordinal) ? t.Id[(t.SweepId.Length + 1)..] : t.Id;

    private static string EpochNote(Trial t) => t.BestEpoch > 0 ? $" at epoch {t.BestEpoch.ToString(Inv)}" : "";

    private static async Task<int> TopAsync(CoordinatorConnection c, Sweep s, int k, bool json, CancellationToken ct)
    {
        var top = (await c.Client.ListBestTrialsAsync(new ListBestTrialsRequest { SweepId = s.Id, TopN = k }, c.Call(ct))).Trials;
        if (top.Count == 0) throw new InvalidOperationException($"sweep {s.Id} has no result yet (no trial has reported {s.ObjectiveMetric})");
        if (json)
        {
            for (var i = 0; i < top.Count; i++)
            {
                var o = SweepView.Json(top[i]);
                o.Insert(0, "type", "trial");
                o.Insert(1, "rank", i + 1);
                Console.Out.WriteLine(o.ToJsonString());
            }
            Console.Out.WriteLine(new JsonObject
            {
                ["type"] = "summary", ["sweep"] = s.Id, ["objective"] = s.ObjectiveMetric,
                ["goal"] = s.Goal == Goal.Minimize ? "minimize" : "maximize", ["trials"] = top.Count, ["asked"] = k,
            }.ToJsonString());
            return ExitCodes.Ok;
        }
        var names = top.SelectMany(t => t.Parameters.Keys).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        var table = new Table().Border(TableBorder.Simple);
        table.AddColumn(new TableColumn("#").RightAligned());
        table.AddColumn("trial");
        table.AddColumn("state");
        table.AddColumn(new TableColumn(Markup.Escape(s.ObjectiveMetric)).RightAligned());
        table.AddColumn(new TableColumn("epoch").RightAligned());
        foreach (var n in names) table.AddColumn(new TableColumn(Markup.Escape(n)).NoWrap());
        for (var i = 0; i < top.Count; i++)
        {
            var t = top[i];
            table.AddRow([(i + 1).ToString(Inv), Markup.Escape(ShortId(t)), SweepView.State(t.State), SweepView.Metric(t.HasBestMetric ? t.BestMetric : null),
                t.BestEpoch > 0 ? t.BestEpoch.ToString(Inv) : "", .. names.Select(n => Markup.Escape(t.Parameters.TryGetValue(n, out var v) ? v : ""))]);
        }
        AnsiConsole.Write(table);
        var goal = s.Goal == Goal.Minimize ? "lowest" : "highest";
        var fewer = top.Count < k ? $"; only {top.Count} trial(s) have a result so far" : "";
        AnsiConsole.MarkupLine($"[grey]{top.Count} best trial(s) of {Markup.Escape(s.Id)} by {Markup.Escape(s.ObjectiveMetric)} ({goal} first){fewer}; " +
                               $"trial t0003 is {Markup.Escape(s.Id)}-t0003 (orch logs, --trial)[/]");
        return ExitCodes.Ok;
    }

    /// <summary>Downloads a trial's checkpoint, verifies its SHA-256, converts it when asked (as orch export does).</summary>
    internal static async Task<string> DownloadAsync(CoordinatorConnection c, string sweepId, string trialId, string target, string format, CancellationToken ct,
        string? quantize = null, int calibrationImages = CheckpointExporter.DefaultCalibrationImages)
    {
        var full = Path.GetFullPath(target);
        // A torchsharp checkpoint goes straight to the target once verified; others are converted from a verified temporary copy.
        var received = format == "torchsharp" ? full : full + ".download";
        using (var call = c.Client.DownloadCheckpoint(new DownloadCheckpointRequest { SweepId = sweepId, TrialId = trialId }, c.Stream(ct)))
            await CheckpointChunks.ReceiveAsync(call.ResponseStream, received, $"the checkpoint of {trialId}", ct);
        if (format == "torchsharp") return full;
        try
        {
            TorchRuntime.Initialize();
            return CheckpointExporter.Export(new ExportRequest(received, format, full, quantize, calibrationImages, SourceName: $"{trialId} (of {sweepId})"), ct).Path;
        }
        finally
        {
            File.Delete(received);
        }
    }
}

using System.CommandLine;
using Orchestrator.Checkpoints;
using System.Text.Json.Nodes;
using Grpc.Core;
using Orchestrator.Cli.Output;
using Orchestrator.Cli.Remote;
using Orchestrator.Protocol.V1;
using Orchestrator.Worker.Export;
using Orchestrator.Worker.Native;
using Spectre.Console;

namespace Orchestrator.Cli.Commands;

/// <summary>Commands that talk to a running coordinator: submit, sweeps, trials, watch, best, cancel, workers.</summary>
internal static class SweepCommands
{
    internal static Option<string?> CoordinatorOption() => new("--coordinator")
    {
        Description = $"The coordinator's address (default: ${CoordinatorConnection.AddressVariable} or {CoordinatorConnection.DefaultAddress}).",
        HelpName = "URL",
    };

    internal static Argument<string> SweepArgument() => new("sweep") { Description = "The sweep's id (see `orch sweeps`)." };

    internal static CoordinatorConnection Connect(ParseResult parse, Option<string?> option)
    {
        var connection = new CoordinatorConnection(parse.GetValue(option));
        CliErrors.CurrentAddress = connection.Address;
        return connection;
    }

    public static IEnumerable<Command> Create() => [Submit(), Sweeps(), Trials(), Watch(), Best(), Cancel(), Workers()];

    private static Command Submit()
    {
        var file = new Argument<FileInfo>("sweep.yaml") { Description = "The sweep file (docs/sweep-spec.md)." };
        var watch = new Option<bool>("--watch") { Description = "Follow the sweep until it ends." };
        var coordinator = CoordinatorOption();
        var json = CommonOptions.Json();
        var command = new Command("submit", "Submit a sweep to the coordinator. It is validated there; errors name the field and line.\nExample: orch submit examples/quickstart.yaml --watch")
        { file, watch, coordinator, json };
        command.SetAction(async (parse, ct) =>
        {
            var path = parse.GetValue(file)!;
            if (!path.Exists) throw new Specs.SpecException($"{path.FullName}: no such file");
            using var c = Connect(parse, coordinator);
            var sweep = await c.Client.SubmitSweepAsync(new SubmitSweepRequest { SpecYaml = await File.ReadAllTextAsync(path.FullName, ct), FileName = path.Name }, c.Call(ct));
            if (parse.GetValue(json)) Console.Out.WriteLine(SweepView.Json(sweep).ToJsonString());
            else AnsiConsole.MarkupLine($"submitted [bold]{sweep.Id}[/] ({Markup.Escape(sweep.Name)}): {sweep.TrialsTotal} trials");
            if (!parse.GetValue(watch)) return ExitCodes.Ok;
            var final = await SweepView.WatchAsync(c, sweep.Id, parse.GetValue(json), ct);
            return Finish(final, parse.GetValue(json));
        });
        return command;
    }

    private static int Finish(Sweep final, bool json)
    {
        if (json) Console.Out.WriteLine(SweepView.Json(final).ToJsonString());
        else AnsiConsole.MarkupLine($"sweep {final.Id} {SweepView.State(final.State)}: {Markup.Escape(final.Message)}; best {SweepView.Metric(final.HasBestMetric ? final.BestMetric : null)} ({final.BestTrialId})");
        return final.State == SweepState.Completed ? ExitCodes.Ok : ExitCodes.Failed;
    }

    private static Command Sweeps()
    {
        var coordinator = CoordinatorOption();
        var json = CommonOptions.Json();
        var command = new Command("sweeps", "List sweeps, newest first.") { coordinator, json };
        command.SetAction(async (parse, ct) =>
        {
            using var c = Connect(parse, coordinator);
            var response = await c.Client.ListSweepsAsync(new ListSweepsRequest(), c.Call(ct));
            if (parse.GetValue(json)) Console.Out.WriteLine(new JsonArray(response.Sweeps.Select(s => (JsonNode)SweepView.Json(s)).ToArray()).ToJsonString());
            else if (response.Sweeps.Count == 0) AnsiConsole.WriteLine("no sweeps yet; submit one with `orch submit sweep.yaml`");
            else AnsiConsole.Write(SweepView.SweepsTable(response.Sweeps));
            return ExitCodes.Ok;
        });
        return command;
    }

    private static Command Trials()
    {
        var sweep = SweepArgument();
        var coordinator = CoordinatorOption();
        var json = CommonOptions.Json();
        var state = new Option<string?>("--state")
        {
            Description = "Only trials in this state.",
            HelpName = "pending|running|completed|stopped|failed|cancelled",
        };
        state.AcceptOnlyFromAmong("pending", "running", "completed", "stopped", "failed", "cancelled");
        var limit = new Option<int>("--limit")
        {
            Description = "Show at most this many trials, best first (0: all). The coordinator is read page by page whatever the limit.",
            DefaultValueFactory = _ => 50,
            HelpName = "N",
        };
        limit.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int>() < 0) r.AddError("--limit must be 0 (all) or more");
        });
        var command = new Command("trials", "The trials of a sweep, best first by the objective (the first 50 unless --limit says otherwise).")
        {
            sweep, coordinator, state, limit, json,
        };
        command.SetAction(async (parse, ct) =>
        {
            using var c = Connect(parse, coordinator);
            var id = parse.GetValue(sweep)!;
            var s = await c.Client.GetSweepAsync(new GetSweepRequest { SweepId = id }, c.Call(ct));
            var filter = parse.GetValue(state) is { } name ? Enum.Parse<TrialState>(name, ignoreCase: true) : TrialState.Unspecified;
            var all = await TrialPages.ListAllAsync(c, id, filter, ct);
            var ordered = TrialPages.BestFirst(all, s.Goal);
            var max = parse.GetValue(limit);
            var shown = (max > 0 ? ordered.Take(max) : ordered).ToList();
            if (parse.GetValue(json))
            {
                Console.Out.WriteLine(new JsonArray(shown.Select(t => (JsonNode)SweepView.Json(t)).ToArray()).ToJsonString());
                return ExitCodes.Ok;
            }
            AnsiConsole.Write(SweepView.TrialsTable(s, shown));
            if (shown.Count < all.Count)
                AnsiConsole.MarkupLine($"[grey]{shown.Count} of {all.Count} trials shown, best first; --limit 0 shows all, --state filters[/]");
            return ExitCodes.Ok;
        });
        return command;
    }

    private static Command Watch()
    {
        var sweep = SweepArgument();
        var coordinator = CoordinatorOption();
        var json = CommonOptions.Json();
        var command = new Command("watch", "Follow a sweep live until it ends: state, epoch, metric and best so far of every trial.") { sweep, coordinator, json };
        command.SetAction(async (parse, ct) =>
        {
            using var c = Connect(parse, coordinator);
            var final = await SweepView.WatchAsync(c, parse.GetValue(sweep)!, parse.GetValue(json), ct);
            return Finish(final, parse.GetValue(json));
        });
        return command;
    }

    private static Command Cancel()
    {
        var sweep = SweepArgument();
        var coordinator = CoordinatorOption();
        var json = CommonOptions.Json();
        var command = new Command("cancel", "Cancel a sweep: pending trials are dropped, running ones stop within seconds.") { sweep, coordinator, json };
        command.SetAction(async (parse, ct) =>
        {
            using var c = Connect(parse, coordinator);
            var s = await c.Client.CancelSweepAsync(new CancelSweepRequest { SweepId = parse.GetValue(sweep)! }, c.Call(ct));
            if (parse.GetValue(json)) Console.Out.WriteLine(SweepView.Json(s).ToJsonString());
            else AnsiConsole.MarkupLine($"sweep {s.Id}: {SweepView.State(s.State)}");
            return ExitCodes.Ok;
        });
        return command;
    }

    private static Command Workers()
    {
        var coordinator = CoordinatorOption();
        var json = CommonOptions.Json();
        var command = new Command("workers", "Workers connected to the coordinator and what they run.") { coordinator, json };
        command.SetAction(async (parse, ct) =>
        {
            using var c = Connect(parse, coordinator);
            var response = await c.Client.ListWorkersAsync(new ListWorkersRequest(), c.Call(ct));
            if (parse.GetValue(json))
                Console.Out.WriteLine(new JsonArray(response.Workers.Select(w => (JsonNode)new JsonObject
                {
                    ["worker"] = w.Id, ["name"] = w.Name, ["state"] = w.State, ["device"] = w.Capabilities?.Device, ["trial"] = w.TrialId,
                    ["gpus"] = new JsonArray((w.Capabilities?.Devices ?? []).Select(d => (JsonNode)new JsonObject
                    {
                        ["index"] = d.Index, ["name"] = d.Name.Length > 0 ? d.Name : null, ["memory_bytes"] = d.MemoryBytes > 0 ? d.MemoryBytes : null,
                    }).ToArray()),
                }).ToArray()).ToJsonString());
            else if (response.Workers.Count == 0) AnsiConsole.WriteLine("no workers connected; start one with `orch worker --coordinator URL`");
            else AnsiConsole.Write(SweepView.WorkersTable(response.Workers));
            return ExitCodes.Ok;
        });
        return command;
    }

    private static Command Best()
    {
        var sweep = SweepArgument();
        var download = new Option<string?>("--download") { Description = "Save the best trial's checkpoint to this file.", HelpName = "PATH" };
        var format = new Option<string?>("--format")
        {
            Description = "File format of --download: torchsharp (an orch checkpoint: orch eval and --pretrained read it), pytorch (.pt state dict for torch.load), " +
                          "safetensors, or onnx (an ONNX graph, as orch export writes it). Default: from the file's extension (.pt, .safetensors, .onnx), else torchsharp.",
        };
        format.AcceptOnlyFromAmong(["torchsharp", .. CheckpointExporter.Formats]);
        var quantize = ExportCommand.QuantizeOption();
        quantize.AcceptOnlyFromAmong([.. CheckpointExporter.QuantizeModes]);
        var calibration = ExportCommand.CalibrationImagesOption();
        var coordinator = CoordinatorOption();
        var json = CommonOptions.Json();
        var command = new Command("best", "The best trial of a sweep, and optionally its checkpoint.\n" +
                                          "Examples: orch best sw-1a2b3c4d --download best.pt --format pytorch\n" +
                                          "          orch best sw-1a2b3c4d --download model.onnx --format onnx [--quantize int8]")
        { sweep, download, format, quantize, calibration, coordinator, json };
        command.SetAction(async (parse, ct) =>
        {
            using var c = Connect(parse, coordinator);
            var id = parse.GetValue(sweep)!;
            var s = await c.Client.GetSweepAsync(new GetSweepRequest { SweepId = id }, c.Call(ct));
            var trial = await c.Client.GetBestTrialAsync(new GetBestTrialRequest { SweepId = id }, c.Call(ct));
            string? saved = null;
            if (parse.GetValue(download) is { } target)
            {
                var fmt = parse.GetValue(format) ?? CheckpointExporter.FormatFromExtension(target) ?? "torchsharp";
                if (parse.GetValue(quantize) is { } q && fmt != "onnx")
                    throw new ArgumentException($"--quantize {q} needs --format onnx");
                saved = await DownloadAsync(c, id, trial.Id, target, fmt, ct, parse.GetValue(quantize), parse.GetValue(calibration));
            }
            if (parse.GetValue(json))
            {
                var o = SweepView.Json(trial);
                o["sweep"] = id;
                o["objective"] = s.ObjectiveMetric;
                o["checkpoint"] = saved;
                Console.Out.WriteLine(o.ToJsonString());
            }
            else
            {
                AnsiConsole.MarkupLine($"best trial of {id}: [bold]{trial.Id}[/] {Markup.Escape(s.ObjectiveMetric)} {SweepView.Metric(trial.HasBestMetric ? trial.BestMetric : null)}");
                foreach (var (k, v) in trial.Parameters.OrderBy(p => p.Key, StringComparer.Ordinal)) AnsiConsole.MarkupLine($"  {Markup.Escape(k)} = {Markup.Escape(v)}");
                if (saved is not null) AnsiConsole.MarkupLine($"checkpoint saved to {Markup.Escape(saved)}");
            }
            return ExitCodes.Ok;
        });
        return command;
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
            return CheckpointExporter.Export(new ExportRequest(received, format, full, quantize, calibrationImages, SourceName: $"{trialId} (best of {sweepId})"), ct).Path;
        }
        finally
        {
            File.Delete(received);
        }
    }
}

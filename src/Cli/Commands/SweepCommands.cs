using System.CommandLine;
using System.Text.Json.Nodes;
using Orchestrator.Cli.Output;
using Orchestrator.Cli.Remote;
using Orchestrator.Protocol.V1;
using Spectre.Console;

namespace Orchestrator.Cli.Commands;

/// <summary>Commands that talk to a running coordinator: submit, sweeps, trials, watch, cancel, workers (best and logs have files of their own).</summary>
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

    public static IEnumerable<Command> Create() => [Submit(), Sweeps(), Trials(), Watch(), BestCommand.Create(), Cancel(), Workers(), LogsCommand.Create()];

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
            var yaml = Specs.YamlSpec.ReadFile(path.FullName);
            // The coordinator never loads user code: what a plug-in holds is checked here.
            Worker.Plugins.PluginCheck.Sweep(yaml, path.Name);
            using var c = Connect(parse, coordinator);
            // Workers never see the user's files: the plug-ins travel through the coordinator.
            yaml = await Remote.PluginShipping.ShipAsync(yaml, path.Name, c, ct);
            var sweep = await c.Client.SubmitSweepAsync(new SubmitSweepRequest { SpecYaml = yaml, FileName = path.Name }, c.Call(ct));
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
}

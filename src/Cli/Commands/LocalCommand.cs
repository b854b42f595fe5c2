using System.CommandLine;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Orchestrator.Cli.Output;
using Orchestrator.Cli.Remote;
using Orchestrator.Coordinator.Checkpoints;
using Orchestrator.Coordinator.Hosting;
using Orchestrator.Protocol.V1;
using Orchestrator.Worker.Host;
using Spectre.Console;

namespace Orchestrator.Cli.Commands;

/// <summary>`orch local`: a coordinator and N workers in this process, on the embedded store.</summary>
internal static class LocalCommand
{
    public static Command Create()
    {
        var file = new Argument<FileInfo>("sweep.yaml") { Description = "The sweep file (docs/sweep-spec.md)." };
        var workers = new Option<int>("--workers") { Description = "Workers to run in this process (each trains one trial at a time).", DefaultValueFactory = _ => 2, HelpName = "N" };
        var stateDir = new Option<string>("--state-dir") { Description = "Folder for the embedded store and checkpoints; unfinished sweeps found there resume.", DefaultValueFactory = _ => ".orch", HelpName = "DIR" };
        var device = CommonOptions.Device();
        var dataDir = new Option<string?>("--data-dir") { Description = "Folder holding the data sets, for every trial.", HelpName = "DIR" };
        var json = CommonOptions.Json();
        var verbose = new Option<bool>("--verbose") { Description = "Show the coordinator's and workers' log." };
        var command = new Command("local", "Run a sweep on this machine: a coordinator and N workers in one process, no Redis needed.\nExample: orch local examples/quickstart.yaml --workers 2")
        { file, workers, stateDir, device, dataDir, json, verbose };
        command.SetAction(async (parse, ct) =>
        {
            var path = parse.GetValue(file)!;
            // A missing, oversized or folder path is said before anything starts.
            var yaml = Specs.YamlSpec.ReadFile(path.FullName);
            // Workers in this process load the plug-ins from their paths; a bad one is said now, before anything starts.
            Worker.Plugins.PluginCheck.Sweep(yaml, path.Name);
            var n = parse.GetValue(workers);
            if (n is < 1 or > 64) throw new ArgumentException("--workers must be between 1 and 64");
            var jsonMode = parse.GetValue(json);
            var state = Path.GetFullPath(parse.GetValue(stateDir)!);
            var level = parse.GetValue(verbose) ? LogLevel.Information : LogLevel.Warning;
            // A device this machine does not have is said now, before a sweep is stored.
            Orchestrator.Worker.Native.TorchRuntime.ResolveDevice(parse.GetValue(device));

            var app = CoordinatorHost.Build(new CoordinatorHostSettings { GrpcPort = 0, StateDir = state, LogLevel = level });
            await app.StartAsync(ct);
            var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
            using var loggers = LoggerFactory.Create(b => b.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss "; })
                .SetMinimumLevel(LogLevel.Warning).AddFilter("Orchestrator", level));
            // Workers share this process's cores: split libtorch's threads between them.
            var threads = Math.Max(1, Environment.ProcessorCount / n);
            var agents = Enumerable.Range(1, n).Select(i => new WorkerAgent(new WorkerAgentOptions
            {
                CoordinatorUrl = address,
                WorkerId = $"local-{i}",
                Device = parse.GetValue(device)!,
                DataDir = parse.GetValue(dataDir),
                WorkDir = Path.Combine(state, "work", $"worker-{i}"),
                TorchThreads = threads,
            }, loggers)).ToList();
            using var stopWorkers = CancellationTokenSource.CreateLinkedTokenSource(ct);
            var running = agents.Select(a => Task.Run(() => a.RunAsync(stopWorkers.Token), CancellationToken.None)).ToList();
            try
            {
                using var c = new CoordinatorConnection(address);
                CliErrors.CurrentAddress = address;
                var unfinished = (await c.Client.ListSweepsAsync(new ListSweepsRequest(), c.Call(ct))).Sweeps
                    .Where(s => s.State is SweepState.Pending or SweepState.Running or SweepState.Paused).ToList();
                // The same file again after an interrupted run (Ctrl+C, kill -9, a reboot): that sweep
                // resumes where it stopped, with the trials it finished, instead of starting over.
                var resumed = unfinished.Where(s => s.SpecYaml == yaml).OrderByDescending(s => s.CreatedAt).FirstOrDefault();
                var others = unfinished.Where(s => s != resumed).ToList();
                if (others.Count > 0 && !jsonMode)
                    AnsiConsole.MarkupLine($"[yellow]note[/] {others.Count} unfinished sweep(s) in {Markup.Escape(state)} resume alongside this one ({string.Join(", ", others.Select(s => s.Id))}); `orch cancel` them or use another --state-dir");
                var sweep = resumed ?? await c.Client.SubmitSweepAsync(new SubmitSweepRequest { SpecYaml = yaml, FileName = path.Name }, c.Call(ct));
                if (!jsonMode)
                {
                    AnsiConsole.MarkupLine(resumed is null
                        ? $"sweep [bold]{sweep.Id}[/] ({Markup.Escape(sweep.Name)}): {sweep.TrialsTotal} trials on {n} local workers; state in {Markup.Escape(state)}"
                        : $"sweep [bold]{sweep.Id}[/] ({Markup.Escape(sweep.Name)}) resumes: {sweep.TrialsCompleted + sweep.TrialsStopped} of {sweep.TrialsTotal} trials done, on {n} local workers; state in {Markup.Escape(state)}");
                    // The coordinator listens on a free port while the sweep runs: other commands reach it there.
                    AnsiConsole.MarkupLine($"[grey]coordinator at {Markup.Escape(address)} while this runs, e.g. orch logs {sweep.Id}-t0000 -f --coordinator {Markup.Escape(address)}[/]");
                }
                var final = await SweepView.WatchAsync(c, sweep.Id, jsonMode, ct);
                var trials = await TrialPages.ListAllAsync(c, sweep.Id, TrialState.Unspecified, ct);
                var checkpoints = app.Services.GetRequiredService<CheckpointStore>();
                string? best = null;
                if (final.BestTrialId.Length > 0)
                {
                    best = checkpoints.PathOf(final.Id, final.BestTrialId, CheckpointSlot.Best);
                    if (!File.Exists(best)) best = null;
                }
                if (jsonMode)
                {
                    Console.Out.WriteLine(new JsonObject
                    {
                        ["type"] = "summary",
                        ["sweep"] = final.Id,
                        ["state"] = SweepView.State(final.State),
                        ["trials_completed"] = final.TrialsCompleted,
                        ["trials_failed"] = final.TrialsFailed,
                        ["trials_total"] = final.TrialsTotal,
                        ["objective"] = final.ObjectiveMetric,
                        ["best_trial"] = final.BestTrialId.Length > 0 ? final.BestTrialId : null,
                        ["best_metric"] = final.HasBestMetric ? final.BestMetric : null,
                        ["checkpoint"] = best,
                    }.ToJsonString());
                }
                else
                {
                    AnsiConsole.Write(SweepView.TrialsTable(final, TrialPages.BestFirst(trials, final.Goal)));
                    AnsiConsole.MarkupLine($"sweep {final.Id} {SweepView.State(final.State)}: {Markup.Escape(final.Message)}");
                    if (final.BestTrialId.Length > 0)
                        AnsiConsole.MarkupLine($"best trial [bold green]{final.BestTrialId}[/]: {Markup.Escape(final.ObjectiveMetric)} {SweepView.Metric(final.BestMetric)}");
                    if (best is not null) AnsiConsole.MarkupLine($"best checkpoint: {Markup.Escape(best)}  (orch eval --checkpoint {Markup.Escape(best)})");
                }
                return final.State == SweepState.Completed ? ExitCodes.Ok : ExitCodes.Failed;
            }
            finally
            {
                await stopWorkers.CancelAsync();
                await Task.WhenAll(running).WaitAsync(TimeSpan.FromSeconds(60), CancellationToken.None).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                foreach (var a in agents) await a.DisposeAsync();
                await app.StopAsync(CancellationToken.None);
                await app.DisposeAsync();
            }
        });
        return command;
    }
}

using System.Globalization;
using System.Text.Json.Nodes;
using Grpc.Core;
using Orchestrator.Protocol.V1;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace Orchestrator.Cli.Output;

/// <summary>How sweeps, trials and workers look in the terminal and in JSON.</summary>
internal static class SweepView
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static string State(SweepState s) => s.ToString().ToLowerInvariant();

    public static string State(TrialState s) => s.ToString().ToLowerInvariant();

    /// <summary>A trial's state for people: "stopped early" rather than "stopped".</summary>
    public static string Label(TrialState s) => s == TrialState.Stopped ? "stopped early" : State(s);

    /// <summary>", 3 stopped early" when trials were stopped early, else nothing.</summary>
    public static string Stopped(Sweep s) => s.TrialsStopped > 0 ? $", {s.TrialsStopped.ToString(Inv)} stopped early" : "";

    public static string Metric(double? v) => v is { } x ? x.ToString("F4", Inv) : "-";

    public static Table SweepsTable(IEnumerable<Sweep> sweeps)
    {
        var t = new Table().Border(TableBorder.Simple);
        foreach (var h in new[] { "sweep", "name", "state", "trials", "done", "stopped", "running", "failed", "best" }) t.AddColumn(h);
        foreach (var s in sweeps)
            t.AddRow(s.Id, Markup.Escape(s.Name), State(s.State), s.TrialsTotal.ToString(Inv), s.TrialsCompleted.ToString(Inv),
                s.TrialsStopped.ToString(Inv), s.TrialsRunning.ToString(Inv), s.TrialsFailed.ToString(Inv), s.HasBestMetric ? $"{Metric(s.BestMetric)} ({s.BestTrialId})" : "-");
        return t;
    }

    /// <summary>Trials in the order given (the coordinator sorts by the objective).</summary>
    public static Table TrialsTable(Sweep? sweep, IEnumerable<Trial> trials)
    {
        var list = trials.ToList();
        var parameterNames = list.SelectMany(t => t.Parameters.Keys).Distinct().Order(StringComparer.Ordinal).ToList();
        var metric = sweep is null || string.IsNullOrEmpty(sweep.ObjectiveMetric) ? "metric" : sweep.ObjectiveMetric;
        var t = new Table().Border(TableBorder.Simple);
        t.AddColumn("trial");
        t.AddColumn("state");
        t.AddColumn(new TableColumn("epoch").RightAligned());
        t.AddColumn(new TableColumn(metric).RightAligned());
        t.AddColumn(new TableColumn("best").RightAligned());
        foreach (var p in parameterNames) t.AddColumn(Markup.Escape(p));
        t.AddColumn("note");
        foreach (var trial in list)
        {
            var isBest = sweep is not null && trial.Id == sweep.BestTrialId;
            var cells = new List<IRenderable>
            {
                new Markup(isBest ? $"[green]{ShortId(trial)}[/]" : ShortId(trial)),
                new Text(Label(trial.State)),
                new Text($"{trial.Epoch}/{trial.Epochs}"),
                new Text(trial.HasLatestMetric ? Metric(trial.LatestMetric) : "-"),
                new Text(trial.HasBestMetric ? Metric(trial.BestMetric) : "-"),
            };
            cells.AddRange(parameterNames.Select(p => new Text(trial.Parameters.TryGetValue(p, out var v) ? v : "")));
            cells.Add(new Text(Truncate(Note(trial), 60)));
            t.AddRow(cells);
        }
        return t;
    }

    /// <summary>What the note column says: why a pending trial waits, else the trial's message.</summary>
    public static string Note(Trial t) =>
        t.State == TrialState.Pending && t.PendingReason.Length > 0
            ? (t.Message.Length > 0 ? $"waiting: {t.PendingReason} ({t.Message})" : $"waiting: {t.PendingReason}")
            : t.Message;

    public static Table WorkersTable(IEnumerable<Protocol.V1.Worker> workers)
    {
        var t = new Table().Border(TableBorder.Simple);
        foreach (var h in new[] { "worker", "state", "device", "gpus", "cores", "trial", "last heartbeat" }) t.AddColumn(h);
        foreach (var w in workers)
            t.AddRow(Markup.Escape(w.Name), w.State, w.Capabilities?.Device ?? "", Markup.Escape(Gpus(w.Capabilities)),
                (w.Capabilities?.CpuCores ?? 0).ToString(Inv), w.TrialId, w.LastHeartbeat?.ToDateTimeOffset().ToLocalTime().ToString("HH:mm:ss", Inv) ?? "");
        return t;
    }

    /// <summary>"8 × NVIDIA H200 (141 GB)", "2", or "0".</summary>
    public static string Gpus(WorkerCapabilities? c)
    {
        if (c is null || c.Gpus == 0) return "0";
        var first = c.Devices.FirstOrDefault();
        if (first is null || (first.Name.Length == 0 && first.MemoryBytes == 0)) return c.Gpus.ToString(Inv);
        var memory = first.MemoryBytes > 0 ? $" ({(first.MemoryBytes / 1e9).ToString("0.#", Inv)} GB)" : "";
        return $"{c.Gpus.ToString(Inv)} × {(first.Name.Length > 0 ? first.Name : "GPU")}{memory}";
    }

    public static JsonObject Json(Sweep s) => new()
    {
        ["sweep"] = s.Id,
        ["name"] = s.Name,
        ["state"] = State(s.State),
        ["trials_total"] = s.TrialsTotal,
        ["trials_completed"] = s.TrialsCompleted,
        ["trials_running"] = s.TrialsRunning,
        ["trials_pending"] = s.TrialsPending,
        ["trials_failed"] = s.TrialsFailed,
        ["trials_cancelled"] = s.TrialsCancelled,
        ["trials_stopped"] = s.TrialsStopped,
        ["max_trials"] = s.MaxTrials,
        ["epochs"] = s.Epochs,
        ["objective"] = s.ObjectiveMetric,
        ["best_trial"] = s.BestTrialId.Length > 0 ? s.BestTrialId : null,
        ["best_metric"] = s.HasBestMetric ? s.BestMetric : null,
        ["message"] = s.Message,
    };

    public static JsonObject Json(Trial t)
    {
        var parameters = new JsonObject();
        foreach (var (k, v) in t.Parameters) parameters[k] = v;
        return new JsonObject
        {
            ["trial"] = t.Id,
            ["index"] = t.Index,
            ["state"] = State(t.State),
            ["attempt"] = t.Attempt,
            ["epoch"] = t.Epoch,
            ["epochs"] = t.Epochs,
            ["metric"] = t.HasLatestMetric ? t.LatestMetric : null,
            ["best_metric"] = t.HasBestMetric ? t.BestMetric : null,
            ["best_epoch"] = t.BestEpoch > 0 ? t.BestEpoch : null,
            ["parameters"] = parameters,
            ["message"] = t.Message,
            ["pending_reason"] = t.State == TrialState.Pending && t.PendingReason.Length > 0 ? t.PendingReason : null,
        };
    }

    /// <summary>"t0003" for "sw-1a2b3c4d-t0003": the sweep is in the heading already.</summary>
    private static string ShortId(Trial t) =>
        t.Id.StartsWith(t.SweepId + "-", StringComparison.Ordinal) ? t.Id[(t.SweepId.Length + 1)..] : t.Id;

    private static string Truncate(string s, int n) => s.Length <= n ? s : s[..(n - 1)] + "…";

    /// <summary>
    /// Follows a sweep until it ends: a live table on a terminal, one line per change otherwise,
    /// JSON lines with <paramref name="json"/>. Returns the final sweep.
    /// </summary>
    public static async Task<Sweep> WatchAsync(Remote.CoordinatorConnection connection, string sweepId, bool json, CancellationToken ct)
    {
        var trials = new SortedDictionary<int, Trial>();
        Sweep? sweep = null;
        var live = !json && !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive;
        var errConsole = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });

        async Task Consume(Action refresh)
        {
            using var call = connection.Client.WatchSweep(new WatchSweepRequest { SweepId = sweepId }, connection.Stream(ct));
            await foreach (var e in call.ResponseStream.ReadAllAsync(ct).ConfigureAwait(false))
            {
                switch (e.EventCase)
                {
                    case SweepEvent.EventOneofCase.Sweep:
                        sweep = e.Sweep;
                        if (json) Console.Out.WriteLine(new JsonObject { ["type"] = "sweep", ["data"] = Json(e.Sweep) }.ToJsonString());
                        else if (!live) errConsole.WriteLine($"sweep {e.Sweep.Id}: {State(e.Sweep.State)}, {e.Sweep.TrialsCompleted}/{e.Sweep.TrialsTotal} done{Stopped(e.Sweep)}, best {Metric(e.Sweep.HasBestMetric ? e.Sweep.BestMetric : null)}");
                        break;
                    case SweepEvent.EventOneofCase.Trial:
                        var changed = !trials.TryGetValue(e.Trial.Index, out var old) || old.State != e.Trial.State || old.Epoch != e.Trial.Epoch
                                      || old.PendingReason != e.Trial.PendingReason;
                        trials[e.Trial.Index] = e.Trial;
                        if (json && changed) Console.Out.WriteLine(new JsonObject { ["type"] = "trial", ["data"] = Json(e.Trial) }.ToJsonString());
                        else if (!live && changed)
                            errConsole.WriteLine($"  {e.Trial.Id} {Label(e.Trial.State)} epoch {e.Trial.Epoch}/{e.Trial.Epochs} {Metric(e.Trial.HasLatestMetric ? e.Trial.LatestMetric : null)} {Note(e.Trial)}");
                        break;
                }
                refresh();
            }
        }

        if (live)
        {
            var table = new Table();
            await AnsiConsole.Live(table).AutoClear(false).StartAsync(async ctx =>
            {
                await Consume(() =>
                {
                    ctx.UpdateTarget(new Rows(
                        new Markup(sweep is null ? "" : $"[bold]{sweep.Id}[/] {Markup.Escape(sweep.Name)}: {State(sweep.State)}, {sweep.TrialsCompleted}/{sweep.TrialsTotal} trials done{Stopped(sweep)}, best {Metric(sweep.HasBestMetric ? sweep.BestMetric : null)}"),
                        TrialsTable(sweep, trials.Values)));
                }).ConfigureAwait(false);
            }).ConfigureAwait(false);
        }
        else
        {
            await Consume(() => { }).ConfigureAwait(false);
        }
        return sweep ?? throw new RpcException(new Grpc.Core.Status(StatusCode.NotFound, $"no sweep '{sweepId}'"));
    }
}

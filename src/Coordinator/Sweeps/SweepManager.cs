using Microsoft.Extensions.Options;
using Orchestrator.Coordinator.Checkpoints;
using Orchestrator.Coordinator.Configuration;
using Orchestrator.Coordinator.Domain;
using Orchestrator.Coordinator.Events;
using Orchestrator.Coordinator.State;
using Orchestrator.Coordinator.Workers;
using Orchestrator.Specs;
using Orchestrator.Sweeps;

namespace Orchestrator.Coordinator.Sweeps;

/// <summary>
/// Sweeps: submit, what each trial event means for its sweep, the operations users run on a sweep
/// (<c>SweepManager.Operations.cs</c>) and recovery after a restart (<c>SweepManager.Recovery.cs</c>).
/// A worker's report or outcome is a trial transition (<see cref="TrialLifecycle"/>) followed by
/// the searcher's reaction, under the sweep's gate: new trials, trials stopped early, the sweep's
/// best trial, the sweep's end (then <see cref="CheckpointRetention"/> prunes). The searcher's
/// state is saved with the sweep after its actions were applied, so a restarted coordinator that
/// replays what it missed (<see cref="RecoverAsync"/>) takes the same actions again, idempotently.
/// </summary>
public sealed partial class SweepManager(
    IStateStore store,
    RecordUpdates updates,
    TrialLifecycle trials,
    SweepRuntimes runtimes,
    WorkerRegistry workers,
    SweepEvents events,
    CheckpointRetention retention,
    CheckpointStore checkpoints,
    IOptions<CoordinatorOptions> options,
    TimeProvider clock,
    ILogger<SweepManager> logger)
{
    /// <summary>Validates, expands and persists a sweep. Throws <see cref="SpecException"/> for a bad spec.</summary>
    public async Task<SweepRecord> SubmitAsync(string yaml, string? fileName, CancellationToken ct)
    {
        var spec = ValidatedSweep.Parse(yaml, fileName, new SweepLimits(options.Value.MaxGridPoints, options.Value.MaxWorkersPerTrial));
        var prior = spec.WarmStartFrom is { } from ? await WarmStartAsync(spec, from, ct).ConfigureAwait(false) : null;
        var searcher = Searcher.Create(spec, prior);
        var actions = searcher.Start();
        var id = NewSweepId();
        var now = clock.GetUtcNow();
        var created = actions.OfType<CreateTrial>().Select(a => TrialLifecycle.Create(id, spec, a, now)).ToList();
        if (created.Count == 0) throw new SpecException($"{fileName ?? "sweep"}: the search space yields no trials");
        var sweep = new SweepRecord
        {
            Id = id,
            Name = spec.Name,
            State = SweepStatus.Pending,
            SpecYaml = yaml,
            CreatedAt = now,
            SearcherState = searcher.SaveState(),
        };
        await store.CreateSweepAsync(sweep, created, ct).ConfigureAwait(false);
        runtimes.Add(id, new SweepRuntime(sweep, spec, searcher));
        Log.SweepSubmitted(logger, id, spec.Name, created.Count);
        workers.Signal();
        return (await store.GetSweepAsync(id, ct).ConfigureAwait(false))!;
    }

    private static string NewSweepId() =>
        "sw-" + Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(4));

    /// <summary>The spec of a sweep, or null when it cannot be validated any more.</summary>
    public ValidatedSweep? TrySpecOf(SweepRecord sweep) => runtimes.TrySpecOf(sweep);

    /// <summary>The sweeps the scheduler serves, oldest first, from memory.</summary>
    public IReadOnlyList<ActiveSweep> ActiveSweeps() => [.. runtimes.Active().Select(r => new ActiveSweep(r.Id, r.Spec))];

    /// <summary>The sweeps paused by a user, from memory (their pending trials wait for orch resume).</summary>
    public IReadOnlyList<string> PausedSweeps() => [.. runtimes.Paused().Select(r => r.Id)];

    /// <summary>Whether anyone watches the sweep (events are built only then).</summary>
    public bool HasWatchers(string sweepId) => events.HasWatchers(sweepId);

    /// <summary>Assigns a pending trial to a gang (<see cref="TrialLifecycle.AssignAsync"/>); its sweep starts running.</summary>
    public async Task<TrialRecord?> AssignAsync(TrialRecord trial, IReadOnlyList<GangRank> gang, CancellationToken ct)
    {
        if (runtimes.TryGet(trial.SweepId, out var runtime) && (runtime.Finishing || runtime.Paused)) return null;
        var sweep = await store.GetSweepAsync(trial.SweepId, ct).ConfigureAwait(false);
        if (sweep is { State: SweepStatus.Paused }) return null;
        var assigned = await trials.AssignAsync(trial, gang, sweep is null ? null : runtimes.TrySpecOf(sweep), ct).ConfigureAwait(false);
        if (assigned is null || sweep is not { State: SweepStatus.Pending }) return assigned;
        var running = await updates.SweepAsync(sweep.Id, s => s.State == SweepStatus.Pending ? s with { State = SweepStatus.Running } : null, ct).ConfigureAwait(false);
        if (running is not null) PublishSweep(running);
        return assigned;
    }

    /// <summary>Renews a lease from a heartbeat. False when the token is stale (the worker must stop the trial).</summary>
    public Task<bool> RenewLeaseAsync(string workerId, string trialId, long token, CancellationToken ct) =>
        trials.RenewLeaseAsync(workerId, trialId, token, ct);

    /// <summary>
    /// Notes a stored checkpoint (called after the upload was verified). The checkpoint of a trial
    /// stopped early arrives after the stop: the sweep's retention sees the trial again then.
    /// </summary>
    public async Task<bool> CheckpointStoredAsync(string trialId, long token, int epoch, CancellationToken ct)
    {
        var trial = await trials.CheckpointStoredAsync(trialId, token, epoch, ct).ConfigureAwait(false);
        if (trial is not { State: TrialStatus.Stopped }) return trial is not null;
        if (await store.GetSweepAsync(trial.SweepId, ct).ConfigureAwait(false) is not { } sweep || runtimes.TrySpecOf(sweep) is not { } spec) return true;
        var gate = runtimes.TryGet(sweep.Id, out var runtime) ? runtime.Gate : null;
        if (gate is not null) await gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            await retention.TrialEndedAsync(sweep, trial, spec, ct).ConfigureAwait(false);
        }
        finally
        {
            gate?.Release();
        }
        return true;
    }

    /// <summary>The trial when a checkpoint of <paramref name="epoch"/> may be stored under <paramref name="token"/> (<see cref="TrialLifecycle.AcceptsCheckpointAsync"/>).</summary>
    public Task<TrialRecord?> AcceptsCheckpointAsync(string trialId, long token, int epoch, CancellationToken ct) =>
        trials.AcceptsCheckpointAsync(trialId, token, epoch, ct);

    /// <summary>Checks that <paramref name="token"/> is the trial's current token (for uploads and downloads).</summary>
    public Task<TrialRecord?> CurrentAsync(string trialId, long token, CancellationToken ct) =>
        trials.CurrentAsync(trialId, token, ct);

    /// <summary>Records a metric point; the searcher sees its objective. Returns false when the writer's token is stale or the trial ended.</summary>
    public async Task<bool> ReportMetricAsync(string trialId, long token, MetricPointRecord point, CancellationToken ct)
    {
        var trial = await store.GetTrialAsync(trialId, ct).ConfigureAwait(false);
        if (trial is null) return false;
        // The sweep's runtime is cached; the sweep record (spec, searcher state) is read only on a miss.
        if (!runtimes.TryGet(trial.SweepId, out var runtime))
        {
            var record = await store.GetSweepAsync(trial.SweepId, ct).ConfigureAwait(false);
            if (record is null || !record.IsUnfinished)
                return !trial.IsFinished && await store.AppendMetricAsync(trialId, token, point, ct).ConfigureAwait(false) is not (MetricAppendResult.StaleToken or MetricAppendResult.UnknownTrial);
            runtime = runtimes.Of(record);
        }
        var recorded = await trials.RecordMetricAsync(trialId, token, point, runtime.Spec, ct).ConfigureAwait(false);
        if (!recorded.Accepted) return false;
        if (recorded.Trial is not { } updated) return true;
        double value;
        if (recorded.Objective is { } reported) value = reported;
        else if (recorded.Diverged) value = double.NaN; // never best, and the stopping rule's worst score
        else return true;

        await runtime.Gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            // A re-sent report the searcher has seen returns nothing (it ignores epochs it knows).
            var actions = runtime.Searcher.OnValidation(updated.Index, point.Epoch, value);
            var best = !recorded.Duplicate && (runtime.Best is not { } b || runtime.Spec.IsBetter(value, b));
            // A sweep write costs two round trips: it is made when the searcher acted, when its state
            // changes with every report (a stopping rule, a model-based method), or for a new best.
            // Otherwise its bookkeeping of the report is saved with the next write, and a restart
            // replays the report from the store, which changes no decision.
            var save = actions.Count > 0 || best || runtime.Searcher.ReportsChangeState;
            await ApplyActionsAsync(runtime, actions, ct, save ? s => s with
            {
                BestTrialId = runtime.Spec.IsBetter(value, s.BestMetric) ? trialId : s.BestTrialId,
                BestMetric = runtime.Spec.IsBetter(value, s.BestMetric) ? value : s.BestMetric,
            } : null).ConfigureAwait(false);
        }
        finally
        {
            runtime.Gate.Release();
        }
        return true;
    }

    /// <summary>
    /// A worker reports a trial's outcome on one rank. False when the outcome would end or re-queue
    /// the trial but the worker's token is stale (the trial moved on: nothing changed).
    /// </summary>
    public async Task<bool> TrialOutcomeAsync(string workerId, string trialId, long token, int rank, TrialOutcome outcome, string message, CancellationToken ct)
    {
        var applied = true;
        switch (outcome)
        {
            case TrialOutcome.Started:
                return true;
            case TrialOutcome.Completed:
                applied = await EndTrialAsync(trialId, token, TrialStatus.Completed, null, ct).ConfigureAwait(false);
                break;
            case TrialOutcome.FailedPermanently:
                applied = await EndTrialAsync(trialId, token, TrialStatus.Failed, message, ct).ConfigureAwait(false);
                break;
            case TrialOutcome.Failed:
                applied = await RequeueAsync(trialId, token, $"failed on {workerId}: {message}", handedBack: false, ct).ConfigureAwait(false);
                break;
            case TrialOutcome.Drained:
                applied = await RequeueAsync(trialId, token, $"handed back by {workerId}: {message}", handedBack: true, ct).ConfigureAwait(false);
                break;
            case TrialOutcome.Stopped:
                // A stop we asked for: the trial was already moved on (stopped, cancelled or re-queued).
                // Its rank 0 uploads the checkpoints of the epoch it stopped after before it says so:
                // readers waiting for them (CheckpointStore.WaitForExpectedAsync) go on.
                if (rank == 0) checkpoints.Settled(trialId);
                break;
            case TrialOutcome.RankDone:
                // A non-zero rank is free again; the trial itself ends when rank 0 reports.
                break;
        }
        trials.ReleaseRank(workerId, trialId, token, rank);
        return applied;
    }

    /// <summary>
    /// Puts a running trial back in the queue (its worker died, missed heartbeats, or failed
    /// transiently), or fails it once it used up its attempts.
    /// </summary>
    public Task RequeueAsync(string trialId, long token, string reason, CancellationToken ct) =>
        RequeueAsync(trialId, token, reason, handedBack: false, ct);

    /// <summary>
    /// Puts a running trial back in the queue at once because its worker is shutting down and
    /// handed it back at an epoch boundary (after that epoch's checkpoint was stored). Nothing
    /// went wrong, so the assignment does not count against MaxTrialAttempts.
    /// </summary>
    public Task HandBackAsync(string trialId, long token, string reason, CancellationToken ct) =>
        RequeueAsync(trialId, token, reason, handedBack: true, ct);

    /// <summary>False when the token was stale (nothing changed).</summary>
    private async Task<bool> RequeueAsync(string trialId, long token, string reason, bool handedBack, CancellationToken ct)
    {
        var updated = await trials.RequeueAsync(trialId, token, reason, handedBack, ct).ConfigureAwait(false);
        if (updated is { State: TrialStatus.Failed }) await AfterTrialEndedAsync(updated, ct).ConfigureAwait(false);
        return updated is not null;
    }

    /// <summary>False when the token was stale (nothing changed).</summary>
    private async Task<bool> EndTrialAsync(string trialId, long token, TrialStatus state, string? message, CancellationToken ct)
    {
        var ended = await trials.EndAsync(trialId, token, state, message, ct).ConfigureAwait(false);
        if (ended is not null) await AfterTrialEndedAsync(ended, ct).ConfigureAwait(false);
        return ended is not null;
    }

    /// <summary>Tells the sweep's watchers about a trial's current state (and pending reason).</summary>
    public void PublishTrial(TrialRecord trial) => trials.Publish(trial);

    private async Task AfterTrialEndedAsync(TrialRecord trial, CancellationToken ct)
    {
        var sweep = await store.GetSweepAsync(trial.SweepId, ct).ConfigureAwait(false);
        if (sweep is null) return;
        var runtime = runtimes.Of(sweep);
        await runtime.Gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            var succeeded = trial.State == TrialStatus.Completed;
            var actions = runtime.Searcher.OnTrialExited(trial.Index, succeeded);
            var fresh = await ApplyActionsAsync(runtime, actions, ct, s => s with { FailedTrials = s.FailedTrials + (succeeded ? 0 : 1) }).ConfigureAwait(false);
            if (fresh is null) return;
            // A safety net: the searcher normally ends the sweep itself once every trial exited.
            var counts = await store.CountTrialsAsync(sweep.Id, ct).ConfigureAwait(false);
            if (counts.Unfinished == 0 && fresh.IsUnfinished)
            {
                var results = counts.Completed + counts.Stopped;
                await FinishSweepAsync(sweep.Id, results == 0 ? SweepStatus.Failed : SweepStatus.Completed,
                    results == 0 ? $"all {counts.Total} trials failed or were cancelled: no result" : $"{counts.Completed} of {counts.Total} trials completed", ct).ConfigureAwait(false);
            }
            await retention.TrialEndedAsync(fresh, trial, runtime.Spec, ct).ConfigureAwait(false);
        }
        finally
        {
            runtime.Gate.Release();
        }
    }

    /// <summary>
    /// Applies the searcher's actions in an order a restart can repeat: new trials (idempotent by
    /// id), trials stopped early, then the sweep record with the searcher's state (and
    /// <paramref name="change"/>), then completed trials that train on, then the sweep's end. A coordinator that stops between two of
    /// these replays the events the saved state missed (<see cref="RecoverAsync"/>), and the
    /// searcher takes the same actions again. Without actions and without a change nothing is read
    /// or written. Called under the sweep's gate; returns the sweep as written, null when nothing was.
    /// </summary>
    private async Task<SweepRecord?> ApplyActionsAsync(SweepRuntime runtime, IReadOnlyList<SearchAction> actions, CancellationToken ct,
        Func<SweepRecord, SweepRecord>? change = null)
    {
        // Most reports change nothing: no store round trip for them (the report path is hot).
        if (actions.Count == 0 && change is null) return null;
        var sweepId = runtime.Id;
        var now = clock.GetUtcNow();
        var create = actions.OfType<CreateTrial>().Select(a => TrialLifecycle.Create(sweepId, runtime.Spec, a, now)).ToList();
        if (create.Count > 0)
        {
            await store.AddTrialsAsync(sweepId, create, ct).ConfigureAwait(false);
            workers.Signal();
        }
        List<TrialRecord> stopped = [];
        foreach (var stop in actions.OfType<StopTrial>())
        {
            if (await trials.StopAsync(TrialLifecycle.TrialId(sweepId, stop.Index), stop.Reason, ct).ConfigureAwait(false) is { } s) stopped.Add(s);
        }
        var fresh = await updates.SweepAsync(sweepId, s => (change?.Invoke(s) ?? s) with { SearcherState = runtime.Searcher.SaveState() }, ct).ConfigureAwait(false);
        if (fresh is not null)
        {
            runtime.Best = fresh.BestMetric;
            // The epochs orch extend --epochs raised take effect for assignments once the record holds them.
            if (!ReferenceEquals(runtime.Spec, runtime.Searcher.Spec)) runtime.Spec = runtime.Searcher.Spec;
            PublishSweep(fresh);
            // A stopped trial's result counts like a completed one's; its checkpoint may still be on its way (CheckpointStoredAsync).
            foreach (var s in stopped) await retention.TrialEndedAsync(fresh, s, runtime.Spec, ct).ConfigureAwait(false);
        }
        // Completed trials that train on, after the record that says so (recovery reopens those a crash left out).
        foreach (var resume in actions.OfType<ResumeTrial>())
            await ReopenAsync(runtime, resume.Index, ct).ConfigureAwait(false);
        // The searcher decides when the sweep is over (target reached, budget spent, every trial ended).
        if (actions.OfType<ShutdownSearch>().FirstOrDefault() is { } shutdown)
            await FinishSweepAsync(sweepId, shutdown.Failed ? SweepStatus.Failed : SweepStatus.Completed, shutdown.Reason, ct).ConfigureAwait(false);
        return fresh;
    }

    private async Task ReopenAsync(SweepRuntime runtime, int index, CancellationToken ct)
    {
        var id = TrialLifecycle.TrialId(runtime.Id, index);
        retention.TrialReopened(runtime.Id, id);
        await trials.ReopenAsync(id, runtime.Spec.Epochs, ct).ConfigureAwait(false);
    }

    private void PublishSweep(SweepRecord sweep) => events.Publish(new SweepChanged(sweep));

    private static partial class Log
    {
        [LoggerMessage(LogEventIds.Sweeps + 1, LogLevel.Information, "Sweep {SweepId} ({Name}) submitted with {Trials} trials")]
        public static partial void SweepSubmitted(ILogger logger, string sweepId, string name, int trials);

        [LoggerMessage(LogEventIds.Sweeps + 2, LogLevel.Information, "Sweep {SweepId} recovered from the state store")]
        public static partial void SweepRecovered(ILogger logger, string sweepId);

        [LoggerMessage(LogEventIds.Sweeps + 3, LogLevel.Information, "Sweep {SweepId} {State}: {Message}")]
        public static partial void SweepFinished(ILogger logger, string sweepId, string state, string message);

        [LoggerMessage(LogEventIds.Sweeps + 4, LogLevel.Information, "Sweep {SweepId}: {Operation}")]
        public static partial void SweepOperation(ILogger logger, string sweepId, string operation);

        [LoggerMessage(LogEventIds.Sweeps + 5, LogLevel.Information, "Sweep {SweepId} recovered: replayed {Reports} reports and {Exits} trial ends the saved searcher state missed")]
        public static partial void SweepReplayed(ILogger logger, string sweepId, int reports, int exits);
    }
}

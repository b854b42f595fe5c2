// Slightly over 300 lines on purpose: what each trial event means for its sweep (the searcher's
// reaction under the sweep's gate, finishing) reads best as one sequence.
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
/// Sweeps: submit, recovery after a restart, and what each trial event means for its sweep. A
/// worker's report or outcome is a trial transition (<see cref="TrialLifecycle"/>) followed by the
/// searcher's reaction, under the sweep's gate: new trials, trials stopped early, the sweep's best
/// trial, the sweep's end (then <see cref="CheckpointRetention"/> prunes). Searcher state is saved
/// with the sweep, so a restarted coordinator continues where it stopped.
/// </summary>
public sealed partial class SweepManager(
    IStateStore store,
    RecordUpdates updates,
    TrialLifecycle trials,
    SweepRuntimes runtimes,
    WorkerRegistry workers,
    SweepEvents events,
    CheckpointRetention retention,
    IOptions<CoordinatorOptions> options,
    TimeProvider clock,
    ILogger<SweepManager> logger)
{
    /// <summary>Validates, expands and persists a sweep. Throws <see cref="SpecException"/> for a bad spec.</summary>
    public async Task<SweepRecord> SubmitAsync(string yaml, string? fileName, CancellationToken ct)
    {
        var spec = ValidatedSweep.Parse(yaml, fileName, new SweepLimits(options.Value.MaxGridPoints, options.Value.MaxWorkersPerTrial));
        var searcher = Searcher.Create(spec);
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

    /// <summary>Reloads the searchers of unfinished sweeps after a restart.</summary>
    public async Task RecoverAsync(CancellationToken ct)
    {
        foreach (var sweep in await store.ListSweepsAsync(ct).ConfigureAwait(false))
        {
            if (sweep.State is not (SweepStatus.Pending or SweepStatus.Running)) continue;
            try
            {
                runtimes.Of(sweep);
                Log.SweepRecovered(logger, sweep.Id);
            }
            catch (SpecException e)
            {
                // A spec that no longer validates (a newer coordinator, stricter rules): end it visibly.
                await FinishSweepAsync(sweep.Id, SweepStatus.Failed, "cannot resume: " + e.Message, ct).ConfigureAwait(false);
            }
        }
    }

    /// <summary>The spec of a sweep, or null when it cannot be validated any more.</summary>
    public ValidatedSweep? TrySpecOf(SweepRecord sweep) => runtimes.TrySpecOf(sweep);

    /// <summary>The sweeps the scheduler serves, oldest first, from memory.</summary>
    public IReadOnlyList<ActiveSweep> ActiveSweeps() => [.. runtimes.Active().Select(r => new ActiveSweep(r.Id, r.Spec))];

    /// <summary>Whether anyone watches the sweep (events are built only then).</summary>
    public bool HasWatchers(string sweepId) => events.HasWatchers(sweepId);

    /// <summary>Assigns a pending trial to a gang (<see cref="TrialLifecycle.AssignAsync"/>); its sweep starts running.</summary>
    public async Task<TrialRecord?> AssignAsync(TrialRecord trial, IReadOnlyList<GangRank> gang, CancellationToken ct)
    {
        if (runtimes.TryGet(trial.SweepId, out var runtime) && runtime.Finishing) return null;
        var sweep = await store.GetSweepAsync(trial.SweepId, ct).ConfigureAwait(false);
        var assigned = await trials.AssignAsync(trial, gang, sweep is null ? null : runtimes.TrySpecOf(sweep), ct).ConfigureAwait(false);
        if (assigned is null || sweep is not { State: SweepStatus.Pending }) return assigned;
        var running = await updates.SweepAsync(sweep.Id, s => s.State == SweepStatus.Pending ? s with { State = SweepStatus.Running } : null, ct).ConfigureAwait(false);
        if (running is not null) PublishSweep(running);
        return assigned;
    }

    /// <summary>Renews a lease from a heartbeat. False when the token is stale (the worker must stop the trial).</summary>
    public Task<bool> RenewLeaseAsync(string workerId, string trialId, long token, CancellationToken ct) =>
        trials.RenewLeaseAsync(workerId, trialId, token, ct);

    /// <summary>Notes a stored checkpoint (called after the upload was verified).</summary>
    public Task<bool> CheckpointStoredAsync(string trialId, long token, int epoch, CancellationToken ct) =>
        trials.CheckpointStoredAsync(trialId, token, epoch, ct);

    /// <summary>The trial when a checkpoint of <paramref name="epoch"/> may be stored under <paramref name="token"/> (<see cref="TrialLifecycle.AcceptsCheckpointAsync"/>).</summary>
    public Task<TrialRecord?> AcceptsCheckpointAsync(string trialId, long token, int epoch, CancellationToken ct) =>
        trials.AcceptsCheckpointAsync(trialId, token, epoch, ct);

    /// <summary>Checks that <paramref name="token"/> is the trial's current token (for uploads and downloads).</summary>
    public Task<TrialRecord?> CurrentAsync(string trialId, long token, CancellationToken ct) =>
        trials.CurrentAsync(trialId, token, ct);

    /// <summary>Records a metric point; the searcher sees its objective. Returns false when the writer's token is stale.</summary>
    public async Task<bool> ReportMetricAsync(string trialId, long token, MetricPointRecord point, CancellationToken ct)
    {
        var trial = await store.GetTrialAsync(trialId, ct).ConfigureAwait(false);
        if (trial is null) return false;
        // The sweep's runtime is cached; the sweep record (spec, searcher state) is read only on a miss.
        if (!runtimes.TryGet(trial.SweepId, out var runtime))
        {
            var record = await store.GetSweepAsync(trial.SweepId, ct).ConfigureAwait(false);
            if (record is null || record.State is not (SweepStatus.Pending or SweepStatus.Running))
                return await store.AppendMetricAsync(trialId, token, point, ct).ConfigureAwait(false) is not (MetricAppendResult.StaleToken or MetricAppendResult.UnknownTrial);
            runtime = runtimes.Of(record);
        }
        var recorded = await trials.RecordMetricAsync(trialId, token, point, runtime.Spec, ct).ConfigureAwait(false);
        if (!recorded.Accepted) return false;
        if (recorded is not { Trial: { } updated, Objective: { } value }) return true;

        var spec = runtime.Spec;
        await runtime.Gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            var actions = runtime.Searcher.OnValidation(updated.Index, point.Epoch, value);
            // Only a new best or an action is worth a sweep write (a report costs two round trips
            // otherwise); the searcher's bookkeeping of other reports is saved with the next write,
            // and a restart replays at most a re-sent report, which changes no decision.
            if (actions.Count > 0 || runtime.Best is not { } best || spec.IsBetter(value, best))
            {
                var fresh = await updates.SweepAsync(updated.SweepId, s => s with
                {
                    BestTrialId = spec.IsBetter(value, s.BestMetric) ? trialId : s.BestTrialId,
                    BestMetric = spec.IsBetter(value, s.BestMetric) ? value : s.BestMetric,
                    SearcherState = runtime.Searcher.SaveState(),
                }, ct).ConfigureAwait(false);
                if (fresh is not null)
                {
                    runtime.Best = fresh.BestMetric;
                    PublishSweep(fresh);
                }
            }
            // The searcher decides when the sweep is over (target reached, budget spent).
            await ApplyActionsAsync(updated.SweepId, runtime, actions, ct).ConfigureAwait(false);
        }
        finally
        {
            runtime.Gate.Release();
        }
        return true;
    }

    /// <summary>A worker reports a trial's outcome on one rank.</summary>
    public async Task TrialOutcomeAsync(string workerId, string trialId, long token, int rank, TrialOutcome outcome, string message, CancellationToken ct)
    {
        switch (outcome)
        {
            case TrialOutcome.Started:
                return;
            case TrialOutcome.Completed:
                await EndTrialAsync(trialId, token, TrialStatus.Completed, null, ct).ConfigureAwait(false);
                break;
            case TrialOutcome.FailedPermanently:
                await EndTrialAsync(trialId, token, TrialStatus.Failed, message, ct).ConfigureAwait(false);
                break;
            case TrialOutcome.Failed:
                await RequeueAsync(trialId, token, $"failed on {workerId}: {message}", ct).ConfigureAwait(false);
                break;
            case TrialOutcome.Drained:
                await HandBackAsync(trialId, token, $"handed back by {workerId}: {message}", ct).ConfigureAwait(false);
                break;
            case TrialOutcome.Stopped:
                // A stop we asked for: the trial was already moved on (cancelled or re-queued).
                break;
            case TrialOutcome.RankDone:
                // A non-zero rank is free again; the trial itself ends when rank 0 reports.
                break;
        }
        trials.ReleaseRank(workerId, trialId, token, rank);
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

    private async Task RequeueAsync(string trialId, long token, string reason, bool handedBack, CancellationToken ct)
    {
        var updated = await trials.RequeueAsync(trialId, token, reason, handedBack, ct).ConfigureAwait(false);
        if (updated is { State: TrialStatus.Failed }) await AfterTrialEndedAsync(updated, succeeded: false, ct).ConfigureAwait(false);
    }

    private async Task EndTrialAsync(string trialId, long token, TrialStatus state, string? message, CancellationToken ct)
    {
        var ended = await trials.EndAsync(trialId, token, state, message, ct).ConfigureAwait(false);
        if (ended is not null) await AfterTrialEndedAsync(ended, state == TrialStatus.Completed, ct).ConfigureAwait(false);
    }

    /// <summary>Tells the sweep's watchers about a trial's current state (and pending reason).</summary>
    public void PublishTrial(TrialRecord trial) => trials.Publish(trial);

    private async Task AfterTrialEndedAsync(TrialRecord trial, bool succeeded, CancellationToken ct)
    {
        var sweep = await store.GetSweepAsync(trial.SweepId, ct).ConfigureAwait(false);
        if (sweep is null) return;
        var runtime = runtimes.Of(sweep);
        await runtime.Gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            var actions = runtime.Searcher.OnTrialExited(trial.Index, succeeded);
            var fresh = await updates.SweepAsync(sweep.Id, s => s with
            {
                FailedTrials = s.FailedTrials + (succeeded ? 0 : 1),
                SearcherState = runtime.Searcher.SaveState(),
            }, ct).ConfigureAwait(false);
            await ApplyActionsAsync(sweep.Id, runtime, actions, ct).ConfigureAwait(false);
            if (fresh is null) return;
            // A safety net: the searcher normally ends the sweep itself once every trial exited.
            var counts = await store.CountTrialsAsync(sweep.Id, ct).ConfigureAwait(false);
            if (counts.Unfinished == 0 && fresh.State is SweepStatus.Pending or SweepStatus.Running)
                await FinishSweepAsync(sweep.Id, SweepStatus.Completed, $"{counts.Completed} of {counts.Total} trials completed", ct).ConfigureAwait(false);
            await retention.TrialEndedAsync(fresh, trial, runtime.Spec, ct).ConfigureAwait(false);
        }
        finally
        {
            runtime.Gate.Release();
        }
    }

    private async Task ApplyActionsAsync(string sweepId, SweepRuntime runtime, IReadOnlyList<SearchAction> actions, CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        var create = actions.OfType<CreateTrial>().Select(a => TrialLifecycle.Create(sweepId, runtime.Spec, a, now)).ToList();
        if (create.Count > 0)
        {
            await store.AddTrialsAsync(sweepId, create, ct).ConfigureAwait(false);
            workers.Signal();
        }
        foreach (var stop in actions.OfType<StopTrial>())
            await trials.CancelAsync(TrialLifecycle.TrialId(sweepId, stop.Index), "stopped early by the searcher", ct).ConfigureAwait(false);
        if (actions.OfType<ShutdownSearch>().FirstOrDefault() is { } shutdown)
            await FinishSweepAsync(sweepId, shutdown.Failed ? SweepStatus.Failed : SweepStatus.Completed, shutdown.Reason, ct).ConfigureAwait(false);
    }

    /// <summary>Cancels a sweep: pending trials cancelled, running ones stopped.</summary>
    public async Task<SweepRecord?> CancelAsync(string sweepId, CancellationToken ct)
    {
        var sweep = await store.GetSweepAsync(sweepId, ct).ConfigureAwait(false);
        if (sweep is null) return null;
        if (sweep.State is SweepStatus.Pending or SweepStatus.Running)
            await FinishSweepAsync(sweepId, SweepStatus.Cancelled, "cancelled by a user", ct).ConfigureAwait(false);
        return await store.GetSweepAsync(sweepId, ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Ends the sweep: cancels its unfinished trials, then moves it from pending or running to
    /// <paramref name="state"/> (a compare-and-set: one finisher wins). Trials go first so that a
    /// sweep seen finished has no unfinished trial left.
    /// </summary>
    private async Task FinishSweepAsync(string sweepId, SweepStatus state, string message, CancellationToken ct)
    {
        if (await store.GetSweepAsync(sweepId, ct).ConfigureAwait(false) is not { State: SweepStatus.Pending or SweepStatus.Running }) return;
        // Workers freed by the cancellations wake the scheduler: it must not hand them the trials still to cancel.
        if (runtimes.TryGet(sweepId, out var runtime)) runtime.Finishing = true;
        var reason = $"sweep {state.ToString().ToLowerInvariant()}";
        await trials.CancelPendingAsync(sweepId, reason, ct).ConfigureAwait(false);
        // Running trials one by one: each has workers to stop.
        foreach (var trial in await store.ListTrialsPageAsync(sweepId, TrialPageQuery.First(int.MaxValue, TrialStatus.Running), ct).ConfigureAwait(false))
            await trials.CancelAsync(trial.Id, reason, ct).ConfigureAwait(false);
        var now = clock.GetUtcNow();
        var finished = await updates.SweepAsync(sweepId, s => s.State is SweepStatus.Pending or SweepStatus.Running
            ? s with { State = state, FinishedAt = now, Message = message }
            : null, ct).ConfigureAwait(false);
        if (finished is null) return;
        Log.SweepFinished(logger, sweepId, state.ToString(), message);
        PublishSweep(finished);
        runtimes.Remove(sweepId);
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
    }
}

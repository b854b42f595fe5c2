using System.Globalization;
using Microsoft.Extensions.Options;
using Orchestrator.Coordinator.Checkpoints;
using Orchestrator.Coordinator.Configuration;
using Orchestrator.Coordinator.Domain;
using Orchestrator.Coordinator.Events;
using Orchestrator.Coordinator.State;
using Orchestrator.Coordinator.Workers;
using Orchestrator.Sweeps;
using Orchestrator.Trials;

namespace Orchestrator.Coordinator.Sweeps;

/// <summary>
/// A trial's state machine: pending → running (assigned under a lease with a new fencing token) →
/// completed, failed or cancelled, or back to pending (re-queued, handed back). Every transition is
/// a compare-and-set (<see cref="RecordUpdates"/>) that declines unless the trial is still in the
/// state, and under the token, it applies to; so a stale worker's write changes nothing. It tells
/// the workers (<see cref="WorkerCommand"/>) and the watchers (<see cref="TrialChanged"/>); what a
/// transition means for the sweep (the searcher, finishing) is <see cref="SweepManager"/>'s.
/// </summary>
public sealed partial class TrialLifecycle(
    IStateStore store,
    RecordUpdates updates,
    WorkerRegistry workers,
    SweepEvents events,
    CheckpointStore checkpoints,
    IOptions<CoordinatorOptions> options,
    TimeProvider clock,
    ILogger<TrialLifecycle> logger)
{
    private CoordinatorOptions Options => options.Value;

    /// <summary>"{sweepId}-t{index:0000}": the id of the sweep's trial number <paramref name="index"/>.</summary>
    public static string TrialId(string sweepId, int index) => $"{sweepId}-t{index.ToString("0000", CultureInfo.InvariantCulture)}";

    /// <summary>A new pending trial for a searcher's <see cref="CreateTrial"/> (its parameters are validated against the spec now; its YAML is built when it is assigned).</summary>
    public static TrialRecord Create(string sweepId, ValidatedSweep spec, CreateTrial action, DateTimeOffset now)
    {
        var trial = spec.TrialFor(action.Parameters);
        return new TrialRecord
        {
            Id = TrialId(sweepId, action.Index),
            SweepId = sweepId,
            Index = action.Index,
            Parameters = action.Parameters,
            State = TrialStatus.Pending,
            Epochs = trial.Epochs,
            CreatedAt = now,
        };
    }

    /// <summary>
    /// Assigns a pending trial to a gang of ranks (a worker and the GPUs each rank holds there; a
    /// worker appears once per rank it runs): a new fencing token, the lease, state running; each
    /// rank's worker gets its <see cref="TrialAssignment"/>. Null when the trial is no longer
    /// pending (another assignment won).
    /// </summary>
    public async Task<TrialRecord?> AssignAsync(TrialRecord trial, IReadOnlyList<GangRank> gang, ValidatedSweep? spec, CancellationToken ct)
    {
        var full = trial.TrialYaml is null && spec is not null ? spec.TrialFor(trial.Parameters) : null;
        var yaml = trial.TrialYaml ?? (full is null ? null : TrialSpecYaml.Serialize(full));
        if (yaml is null) return null; // a sweep whose spec no longer validates: recovery ends it
        var now = clock.GetUtcNow();
        var assigned = await updates.TrialAsync(trial.Id, t => t.State != TrialStatus.Pending ? null : t with
        {
            State = TrialStatus.Running,
            // The sweep's epochs as they are now (orch extend --epochs may have raised them since the trial was created).
            Epochs = full?.Epochs ?? t.Epochs,
            Attempt = t.Attempt + 1,
            FencingToken = t.FencingToken + 1,
            WorkerIds = gang.Select(r => r.Worker.Id).ToList(),
            LeaseExpiresAt = now + Options.LeaseTimeout,
            StartedAt = t.StartedAt ?? now,
            Message = null,
        }, ct).ConfigureAwait(false);
        if (assigned is null) return null;

        var resume = assigned.CheckpointEpoch > 0 && checkpoints.Exists(assigned.SweepId, assigned.Id, CheckpointSlot.Latest);
        var peers = gang.Select(r => r.Worker.DataEndpointFor(r.Gpus)).ToList();
        // One secret per assignment: ranks of an older assignment, or anyone else, cannot join this ring.
        ReadOnlyMemory<byte> ringSecret = gang.Count > 1 ? System.Security.Cryptography.RandomNumberGenerator.GetBytes(32) : default;
        for (var rank = 0; rank < gang.Count; rank++)
        {
            var (worker, gpus) = gang[rank];
            worker.Attach(assigned.Id, assigned.FencingToken, rank, gpus);
            worker.Send(new TrialAssignment(assigned.Id, assigned.FencingToken, rank, gpus)
            {
                SweepId = assigned.SweepId,
                TrialYaml = yaml,
                WorldSize = gang.Count,
                PeerEndpoints = peers,
                Resume = resume,
                Attempt = assigned.Attempt,
                Aggregation = spec?.Aggregation ?? SweepNames.Aggregations[0],
                Wire = spec?.Wire ?? SweepNames.WireFormats[0],
                RingSecret = ringSecret,
            });
        }
        Log.TrialAssigned(logger, assigned.Id, assigned.Attempt, string.Join(',', assigned.WorkerIds), resume);
        Publish(assigned);
        return assigned;
    }

    /// <summary>Renews a lease from a heartbeat. False when the token is stale (the worker must stop the trial).</summary>
    public async Task<bool> RenewLeaseAsync(string workerId, string trialId, long token, CancellationToken ct)
    {
        var until = clock.GetUtcNow() + Options.LeaseTimeout;
        var renewed = await updates.TrialAsync(trialId, t =>
            t.State == TrialStatus.Running && t.FencingToken == token && t.WorkerIds.Contains(workerId)
                ? t with { LeaseExpiresAt = until }
                : null, ct).ConfigureAwait(false);
        return renewed is not null;
    }

    /// <summary>
    /// Stores a metric point (idempotent by step) and updates the trial's epoch and objective, in
    /// two store round trips: read the trial, then append the point and replace the trial in one
    /// atomic write (again from the read when a heartbeat changed the trial in between).
    /// <see cref="MetricRecording.Stale"/> when the writer's token is not the trial's current one.
    /// </summary>
    public async Task<MetricRecording> RecordMetricAsync(string trialId, long token, MetricPointRecord point, ValidatedSweep spec, CancellationToken ct)
    {
        double? objective = point.Values.TryGetValue(spec.ObjectiveMetric, out var v) && double.IsFinite(v) ? v : null;
        var diverged = objective is null && Diverged(point, spec);
        for (var attempt = 0; ; attempt++)
        {
            var trial = await store.GetTrialAsync(trialId, ct).ConfigureAwait(false);
            // A finished trial takes no more points: a stopped trial's worker may still be in its next epoch.
            if (trial is null || trial.FencingToken != token || trial.IsFinished) return MetricRecording.Stale;
            var improved = objective is { } o && spec.IsBetter(o, trial.BestMetric);
            var updated = trial with
            {
                Epoch = Math.Max(trial.Epoch, point.Epoch),
                LatestMetric = objective ?? trial.LatestMetric,
                BestMetric = improved ? objective : trial.BestMetric,
                BestEpoch = improved ? point.Epoch : trial.BestEpoch,
            };
            // Most reports (per-step values within an epoch) leave the trial's summary as it was:
            // then only the point is written, and the trial record is not re-encoded.
            var unchanged = updated.Epoch == trial.Epoch && updated.LatestMetric == trial.LatestMetric && updated.BestMetric == trial.BestMetric;
            var result = unchanged
                ? await store.AppendMetricAsync(trialId, token, point, ct).ConfigureAwait(false)
                : await store.AppendMetricAsync(trialId, token, point, new TrialUpdate(updated, trial.Version), ct).ConfigureAwait(false);
            switch (result)
            {
                case MetricAppendResult.StaleToken or MetricAppendResult.UnknownTrial:
                    return MetricRecording.Stale;
                case MetricAppendResult.Duplicate:
                    // A re-sent report (after a reconnect or a coordinator restart): stored already, but the
                    // searcher may not have seen it if the coordinator stopped in between.
                    return new MetricRecording(trial, objective) { Duplicate = true, Diverged = diverged };
                case MetricAppendResult.Appended:
                    if (events.HasWatchers(trial.SweepId)) events.Publish(new MetricRecorded(trial.SweepId, trialId, point));
                    if (unchanged) return new MetricRecording(trial, objective) { Diverged = diverged }; // watchers know this trial as it is
                    updated = updated with { Version = trial.Version + 1 };
                    Publish(updated);
                    return new MetricRecording(updated, objective) { Diverged = diverged };
            }
            // Conflict: the trial changed since it was read.
            if (attempt >= RecordUpdates.MaxRetries) throw new InvalidOperationException($"trial {trialId}: too much contention");
        }
    }

    /// <summary>
    /// Whether an epoch's report comes from a diverged run: every epoch report carries the
    /// validation accuracy (counted, so always finite), and workers leave out values that are not
    /// finite, so an epoch report without the objective's value had a NaN or infinite one.
    /// </summary>
    public static bool Diverged(MetricPointRecord point, ValidatedSweep spec) =>
        spec.ObjectiveMetric != MetricNames.ValAccuracy && !point.Values.ContainsKey(spec.ObjectiveMetric) && point.Values.ContainsKey(MetricNames.ValAccuracy);

    /// <summary>Notes a stored checkpoint (called after the upload was verified). Null when the token is stale.</summary>
    public Task<TrialRecord?> CheckpointStoredAsync(string trialId, long token, int epoch, CancellationToken ct) =>
        updates.TrialAsync(trialId, t => t.FencingToken != token ? null : t with
        {
            CheckpointEpoch = Math.Max(t.CheckpointEpoch, epoch),
        }, ct);

    /// <summary>The trial when <paramref name="token"/> is its current token and it runs (for uploads, downloads, aggregation); else null.</summary>
    public async Task<TrialRecord?> CurrentAsync(string trialId, long token, CancellationToken ct)
    {
        var t = await store.GetTrialAsync(trialId, ct).ConfigureAwait(false);
        return t is not null && t.IsHeldWith(token) ? t : null;
    }

    /// <summary>
    /// Puts a running trial back in the queue, or fails it once it used up its attempts. A trial
    /// <paramref name="handedBack"/> by a draining worker goes back without counting the attempt.
    /// Returns the trial as stored (pending, or failed), or null when the token was stale.
    /// </summary>
    public async Task<TrialRecord?> RequeueAsync(string trialId, long token, string reason, bool handedBack, CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        var max = Options.MaxTrialAttempts;
        var updated = await updates.TrialAsync(trialId, t =>
        {
            if (t.State != TrialStatus.Running || t.FencingToken != token) return null;
            if (handedBack) t = t with { HandedBack = t.HandedBack + 1 };
            return handedBack || t.CountedAttempts < max
                ? t with { State = TrialStatus.Pending, WorkerIds = [], LeaseExpiresAt = null, Message = reason }
                : t with { State = TrialStatus.Failed, WorkerIds = [], LeaseExpiresAt = null, FinishedAt = now, Message = $"{reason} (attempt {t.CountedAttempts} of {max})" };
        }, ct).ConfigureAwait(false);
        if (updated is null) return null;
        workers.StopTrial(trialId, reason);
        if (handedBack) Log.TrialHandedBack(logger, trialId, reason);
        else Log.TrialRequeued(logger, trialId, reason, updated.State == TrialStatus.Pending);
        Publish(updated);
        workers.Signal();
        return updated;
    }

    /// <summary>
    /// A completed trial trains on to <paramref name="epochs"/> (orch extend --epochs): back to
    /// pending, and resumed from its latest checkpoint when it is assigned. Null when it is not
    /// completed with fewer epochs (reopened already, say).
    /// </summary>
    public async Task<TrialRecord?> ReopenAsync(string trialId, int epochs, CancellationToken ct)
    {
        var updated = await updates.TrialAsync(trialId, t => t.State == TrialStatus.Completed && t.Epochs < epochs
            ? t with { State = TrialStatus.Pending, Epochs = epochs, FinishedAt = null, Message = $"training on to {epochs} epochs (sweep extended)" }
            : null, ct).ConfigureAwait(false);
        if (updated is null) return null;
        Log.TrialReopened(logger, trialId, epochs);
        Publish(updated);
        workers.Signal();
        return updated;
    }

    /// <summary>Ends a running trial as <paramref name="state"/> (its rank 0 reported the outcome). Null when the token was stale.</summary>
    public async Task<TrialRecord?> EndAsync(string trialId, long token, TrialStatus state, string? message, CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        var updated = await updates.TrialAsync(trialId, t => t.State != TrialStatus.Running || t.FencingToken != token ? null : t with
        {
            State = state,
            WorkerIds = [],
            LeaseExpiresAt = null,
            FinishedAt = now,
            Message = message,
        }, ct).ConfigureAwait(false);
        if (updated is null) return null;
        Log.TrialEnded(logger, trialId, state.ToString(), message ?? "");
        Publish(updated);
        return updated;
    }

    /// <summary>Cancels an unfinished trial (pending or running, whatever its token) and stops its workers.</summary>
    public Task<TrialRecord?> CancelAsync(string trialId, string reason, CancellationToken ct) =>
        EndUnfinishedAsync(trialId, TrialStatus.Cancelled, reason, ct);

    /// <summary>
    /// Stops an unfinished trial early (<see cref="TrialStatus.Stopped"/>): a result at the epochs it
    /// trained. Its workers finish uploading the checkpoint of the epoch just ended (accepted under
    /// the same token, <see cref="AcceptsCheckpointAsync"/>) and stop before the next training step.
    /// </summary>
    public Task<TrialRecord?> StopAsync(string trialId, string reason, CancellationToken ct) =>
        EndUnfinishedAsync(trialId, TrialStatus.Stopped, reason, ct);

    /// <summary>
    /// The trial, when a checkpoint of <paramref name="epoch"/> may be stored for the holder of
    /// <paramref name="token"/>: it runs under that token, or it was stopped early under it and the
    /// checkpoint is of an epoch it reported (the upload that follows the report the stop answered).
    /// </summary>
    public async Task<TrialRecord?> AcceptsCheckpointAsync(string trialId, long token, int epoch, CancellationToken ct)
    {
        var t = await store.GetTrialAsync(trialId, ct).ConfigureAwait(false);
        if (t is null || t.FencingToken != token) return null;
        return t.State == TrialStatus.Running || (t.State == TrialStatus.Stopped && epoch <= t.Epoch) ? t : null;
    }

    private async Task<TrialRecord?> EndUnfinishedAsync(string trialId, TrialStatus state, string reason, CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        var updated = await updates.TrialAsync(trialId, t => t.IsFinished ? null : t with
        {
            State = state,
            WorkerIds = [],
            LeaseExpiresAt = null,
            FinishedAt = now,
            Message = reason,
        }, ct).ConfigureAwait(false);
        if (updated is null) return null;
        // A stopped trial's workers upload the judged epoch's checkpoint before they stop: readers wait for it.
        if (state == TrialStatus.Stopped && workers.Runs(trialId)) checkpoints.Expect(trialId);
        workers.StopTrial(trialId, reason, afterCheckpoint: state == TrialStatus.Stopped);
        if (state == TrialStatus.Stopped) Log.TrialStopped(logger, trialId, reason);
        Publish(updated);
        workers.Signal();
        return updated;
    }

    /// <summary>
    /// Cancels every pending trial of the sweep in bulk: one read and one batch compare-and-set per
    /// page of <paramref name="pageSize"/>. A trial assigned meanwhile fails its compare-and-set and
    /// is cancelled on its own (and its workers stopped).
    /// </summary>
    public async Task CancelPendingAsync(string sweepId, string reason, CancellationToken ct, int pageSize = 5000)
    {
        var now = clock.GetUtcNow();
        // The next page is read while the current one is written: the two do not overlap (indexes
        // above the current page's last), and the store serves both at once.
        var reading = store.ListTrialsPageAsync(sweepId, TrialPageQuery.First(pageSize, TrialStatus.Pending), ct);
        while (true)
        {
            var pending = await reading.ConfigureAwait(false);
            if (pending.Count == 0) break;
            var cancelled = pending.Select(t => t with { State = TrialStatus.Cancelled, WorkerIds = [], LeaseExpiresAt = null, FinishedAt = now, Message = reason }).ToList();
            var writing = store.TryUpdateTrialsAsync(sweepId, [.. cancelled.Select((t, i) => new TrialUpdate(t, pending[i].Version))], ct);
            reading = pending.Count < pageSize
                ? Task.FromResult<IReadOnlyList<TrialRecord>>([])
                : store.ListTrialsPageAsync(sweepId, new TrialPageQuery(pending[^1].Index, pageSize, TrialStatus.Pending), ct);
            var applied = await writing.ConfigureAwait(false);
            for (var i = 0; i < pending.Count; i++)
            {
                if (applied[i]) Publish(cancelled[i] with { Version = pending[i].Version + 1 });
                else await CancelAsync(pending[i].Id, reason, ct).ConfigureAwait(false);
            }
        }
        workers.Signal();
    }

    /// <summary>
    /// Frees one rank of one assignment on a worker (it reported its outcome): the trial may already
    /// have been given back to the same worker, which may run other ranks of it on other GPUs.
    /// </summary>
    public void ReleaseRank(string workerId, string trialId, long token, int rank)
    {
        workers.Find(workerId)?.Detach(trialId, token, rank);
        workers.Signal();
    }

    /// <summary>Tells the sweep's watchers about a trial's current state (and pending reason).</summary>
    public void Publish(TrialRecord trial)
    {
        if (events.HasWatchers(trial.SweepId)) events.Publish(new TrialChanged(trial));
    }

    private static partial class Log
    {
        [LoggerMessage(LogEventIds.Trials + 1, LogLevel.Information, "Trial {TrialId} attempt {Attempt} assigned to {Workers} (resume: {Resume})")]
        public static partial void TrialAssigned(ILogger logger, string trialId, int attempt, string workers, bool resume);

        [LoggerMessage(LogEventIds.Trials + 2, LogLevel.Warning, "Trial {TrialId} re-queued: {Reason} (attempts left: {AttemptsLeft})")]
        public static partial void TrialRequeued(ILogger logger, string trialId, string reason, bool attemptsLeft);

        [LoggerMessage(LogEventIds.Trials + 3, LogLevel.Information, "Trial {TrialId} re-queued: {Reason} (not counted as an attempt)")]
        public static partial void TrialHandedBack(ILogger logger, string trialId, string reason);

        [LoggerMessage(LogEventIds.Trials + 4, LogLevel.Information, "Trial {TrialId} ended {State} {Message}")]
        public static partial void TrialEnded(ILogger logger, string trialId, string state, string message);

        [LoggerMessage(LogEventIds.Trials + 5, LogLevel.Information, "Trial {TrialId} stopped: {Reason}")]
        public static partial void TrialStopped(ILogger logger, string trialId, string reason);

        [LoggerMessage(LogEventIds.Trials + 6, LogLevel.Information, "Trial {TrialId} reopened to train on to {Epochs} epochs")]
        public static partial void TrialReopened(ILogger logger, string trialId, int epochs);
    }
}

/// <summary>
/// What recording a metric point did: stored with the trial as updated and the point's objective
/// value (when it carried one), a duplicate of a stored point, or refused for a stale token.
/// </summary>
public sealed record MetricRecording(TrialRecord? Trial, double? Objective, bool Accepted = true)
{
    /// <summary>The writer's token is not the trial's current one, the trial ended or is gone: nothing stored.</summary>
    public static readonly MetricRecording Stale = new(null, null, Accepted: false);

    /// <summary>The step was stored before: nothing changed in the store.</summary>
    public bool Duplicate { get; init; }

    /// <summary>An epoch's report whose objective was not finite (<see cref="TrialLifecycle.Diverged"/>): the searcher sees NaN, the worst score.</summary>
    public bool Diverged { get; init; }
}

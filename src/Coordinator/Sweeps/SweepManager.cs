using System.Collections.Concurrent;
using System.Globalization;
using Microsoft.Extensions.Options;
using Orchestrator.Coordinator.Checkpoints;
using Orchestrator.Coordinator.Domain;
using Orchestrator.Coordinator.Events;
using Orchestrator.Coordinator.Hosting;
using Orchestrator.Coordinator.State;
using Orchestrator.Coordinator.Workers;
using Proto = Orchestrator.Protocol.V1;
using Orchestrator.Specs;
using Orchestrator.Sweeps;
using Orchestrator.Trials;

namespace Orchestrator.Coordinator.Sweeps;

/// <summary>
/// The sweep and trial state machine: submit, assign, metrics, outcomes, re-queue, cancel. Every
/// change is a compare-and-set on the store (so a second writer never overwrites a change), every
/// write from a worker carries its fencing token (so a stale worker cannot touch a reassigned
/// trial), and searcher state is persisted with the sweep (so a restarted coordinator continues).
/// </summary>
public sealed partial class SweepManager(
    IStateStore store,
    WorkerRegistry workers,
    SweepEvents events,
    CheckpointStore checkpoints,
    CheckpointRetention retention,
    Aggregation.GradientSocketEndpoint gradientSocket,
    Scheduling.PendingReasons pendingReasons,
    IOptions<CoordinatorOptions> options,
    TimeProvider clock,
    ILogger<SweepManager> logger)
{
    private readonly ConcurrentDictionary<string, SweepRuntime> _runtimes = new(StringComparer.Ordinal);
    private readonly CoordinatorOptions _options = options.Value;

    /// <summary>A sweep's in-memory companions: the validated spec, its searcher, and a lock for sweep-level updates.</summary>
    private sealed class SweepRuntime(SweepRecord sweep, ValidatedSweep spec, Searcher searcher)
    {
        public string Id { get; } = sweep.Id;
        public DateTimeOffset CreatedAt { get; } = sweep.CreatedAt;
        public ValidatedSweep Spec { get; } = spec;
        public Searcher Searcher { get; } = searcher;
        public SemaphoreSlim Gate { get; } = new(1, 1);
        /// <summary>The sweep's best objective as last written (under <see cref="Gate"/>).</summary>
        public double? Best { get; set; } = sweep.BestMetric;
        /// <summary>Pending or running (the scheduler serves it); false once it finished.</summary>
        public volatile bool Active = sweep.State is SweepStatus.Pending or SweepStatus.Running;
    }

    /// <summary>
    /// The sweeps the scheduler serves, oldest first, from memory: no store read, so a pass does
    /// not grow with the size of the sweeps' records (their spec and searcher state).
    /// </summary>
    public IReadOnlyList<ActiveSweep> ActiveSweeps() =>
        [.. _runtimes.Values.Where(r => r.Active).OrderBy(r => r.CreatedAt).ThenBy(r => r.Id, StringComparer.Ordinal).Select(r => new ActiveSweep(r.Id, r.Spec))];

    private DateTimeOffset Now => clock.GetUtcNow();

    private SweepLimits Limits => new(_options.MaxGridPoints, _options.MaxWorkersPerTrial);

    /// <summary>Validates, expands and persists a sweep. Throws <see cref="SpecException"/> for a bad spec.</summary>
    public async Task<SweepRecord> SubmitAsync(string yaml, string? fileName, CancellationToken ct)
    {
        var spec = ValidatedSweep.Parse(yaml, fileName, Limits);
        var searcher = Searcher.Create(spec);
        var actions = searcher.Start();
        var id = NewSweepId();
        var now = Now;
        var trials = actions.OfType<CreateTrial>().Select(a => NewTrial(id, spec, a, now)).ToList();
        if (trials.Count == 0) throw new SpecException($"{fileName ?? "sweep"}: the search space yields no trials");
        var sweep = new SweepRecord
        {
            Id = id,
            Name = spec.Name,
            State = SweepStatus.Pending,
            SpecYaml = yaml,
            CreatedAt = now,
            SearcherState = searcher.SaveState(),
        };
        await store.CreateSweepAsync(sweep, trials, ct).ConfigureAwait(false);
        _runtimes[id] = new SweepRuntime(sweep, spec, searcher);
        Log.SweepSubmitted(logger, id, spec.Name, trials.Count);
        workers.Signal();
        return (await store.GetSweepAsync(id, ct).ConfigureAwait(false))!;
    }

    private static TrialRecord NewTrial(string sweepId, ValidatedSweep spec, CreateTrial action, DateTimeOffset now)
    {
        var trial = spec.TrialFor(action.Parameters);
        return new TrialRecord
        {
            Id = $"{sweepId}-t{action.Index.ToString("0000", CultureInfo.InvariantCulture)}",
            SweepId = sweepId,
            Index = action.Index,
            Parameters = action.Parameters,
            TrialYaml = TrialSpecYaml.Serialize(trial),
            State = TrialStatus.Pending,
            Epochs = trial.Epochs,
            CreatedAt = now,
        };
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
                Runtime(sweep);
                Log.SweepRecovered(logger, sweep.Id);
            }
            catch (SpecException e)
            {
                // A spec that no longer validates (a newer coordinator, stricter rules): end it visibly.
                await FinishSweepAsync(sweep.Id, SweepStatus.Failed, "cannot resume: " + e.Message, ct).ConfigureAwait(false);
            }
        }
    }

    private SweepRuntime Runtime(SweepRecord sweep) => _runtimes.GetOrAdd(sweep.Id, _ =>
    {
        var spec = ValidatedSweep.Parse(sweep.SpecYaml, sweep.Name, new SweepLimits(int.MaxValue, int.MaxValue, int.MaxValue));
        var searcher = sweep.SearcherState is { } state ? Searcher.Restore(spec, state) : Searcher.Create(spec);
        return new SweepRuntime(sweep, spec, searcher);
    });

    /// <summary>The spec of a sweep, or null when it cannot be validated any more.</summary>
    public ValidatedSweep? TrySpecOf(SweepRecord sweep)
    {
        try
        {
            return sweep.State is SweepStatus.Pending or SweepStatus.Running
                ? Runtime(sweep).Spec
                : ValidatedSweep.Parse(sweep.SpecYaml, sweep.Name, new SweepLimits(int.MaxValue, int.MaxValue, int.MaxValue));
        }
        catch (SpecException)
        {
            return null;
        }
    }

    /// <summary>The validated spec of a sweep (for the scheduler: parallelism, gang size).</summary>
    public ValidatedSweep SpecOf(SweepRecord sweep) => Runtime(sweep).Spec;

    /// <summary>
    /// Assigns a pending trial to a gang of ranks (a worker and the GPUs each rank holds there; a
    /// worker appears once per rank it runs): a new fencing token, the lease, state running.
    /// Returns null when the trial is no longer pending (another assignment won).
    /// </summary>
    public async Task<TrialRecord?> AssignAsync(TrialRecord trial, IReadOnlyList<GangRank> gang, CancellationToken ct)
    {
        var now = Now;
        var assigned = await UpdateTrialAsync(trial.Id, t => t.State != TrialStatus.Pending ? null : t with
        {
            State = TrialStatus.Running,
            Attempt = t.Attempt + 1,
            FencingToken = t.FencingToken + 1,
            WorkerIds = gang.Select(r => r.Worker.Id).ToList(),
            LeaseExpiresAt = now + _options.LeaseTimeout,
            StartedAt = t.StartedAt ?? now,
            Message = null,
        }, ct).ConfigureAwait(false);
        if (assigned is null) return null;

        var sweep = await store.GetSweepAsync(trial.SweepId, ct).ConfigureAwait(false);
        if (sweep is { State: SweepStatus.Pending })
            await UpdateSweepAsync(sweep.Id, s => s.State == SweepStatus.Pending ? s with { State = SweepStatus.Running } : null, ct).ConfigureAwait(false);

        var spec = sweep is null ? null : TrySpecOf(sweep);
        var resume = assigned.CheckpointEpoch > 0 && checkpoints.Exists(assigned.SweepId, assigned.Id, CheckpointSlot.Latest);
        for (var rank = 0; rank < gang.Count; rank++)
        {
            var (worker, gpus) = gang[rank];
            worker.Attach(assigned.Id, assigned.FencingToken, rank, gpus);
            var lease = new Proto.TrialLease { TrialId = assigned.Id, FencingToken = assigned.FencingToken, Rank = rank };
            lease.Gpus.AddRange(gpus);
            var message = new Proto.AssignTrial
            {
                Lease = lease,
                Device = gpus.Count > 0 ? $"cuda:{gpus[0].ToString(CultureInfo.InvariantCulture)}" : "cpu",
                SweepId = assigned.SweepId,
                TrialYaml = assigned.TrialYaml,
                Rank = rank,
                WorldSize = gang.Count,
                Resume = resume,
                Attempt = assigned.Attempt,
                CheckpointEveryEpochs = 1,
                Aggregation = spec?.Aggregation ?? SweepNames.Aggregations[0],
                Wire = spec?.Wire ?? SweepNames.WireFormats[0],
            };
            if (message.Aggregation == "coordinator" && gradientSocket.Advertised is { } socket)
            {
                message.GradientEndpoint = socket;
                message.GradientSocketPath = gradientSocket.UnixPath ?? "";
            }
            message.PeerWorkerIds.AddRange(gang.Select(r => r.Worker.Id));
            message.PeerEndpoints.AddRange(gang.Select(r => r.Worker.DataEndpointFor(r.Gpus)));
            worker.Send(new Proto.CoordinatorMessage { Assign = message });
        }
        Log.TrialAssigned(logger, assigned.Id, assigned.Attempt, string.Join(',', assigned.WorkerIds), resume);
        PublishTrial(assigned);
        return assigned;
    }

    /// <summary>Renews a lease from a heartbeat. False when the token is stale (the worker must stop the trial).</summary>
    public async Task<bool> RenewLeaseAsync(string workerId, string trialId, long token, CancellationToken ct)
    {
        var until = Now + _options.LeaseTimeout;
        var renewed = await UpdateTrialAsync(trialId, t =>
            t.State == TrialStatus.Running && t.FencingToken == token && t.WorkerIds.Contains(workerId)
                ? t with { LeaseExpiresAt = until }
                : null, ct).ConfigureAwait(false);
        return renewed is not null;
    }

    /// <summary>
    /// Records a metric point. Returns false when the writer's token is stale. Two store round
    /// trips in the common case: read the trial, then append the point together with the
    /// trial's new summary (epoch, latest and best objective) in one atomic write; the sweep is
    /// written only when the report changes its best trial or the searcher acts on it.
    /// </summary>
    public async Task<bool> ReportMetricAsync(string trialId, long token, MetricPointRecord point, CancellationToken ct)
    {
        TrialRecord updated;
        SweepRuntime? runtime;
        double? objective;
        for (var attempt = 0; ; attempt++)
        {
            var trial = await store.GetTrialAsync(trialId, ct).ConfigureAwait(false);
            if (trial is null || trial.FencingToken != token) return false;
            // The sweep's runtime is cached; the sweep record (spec, searcher state) is read only on a miss.
            runtime = _runtimes.GetValueOrDefault(trial.SweepId);
            if (runtime is null && await store.GetSweepAsync(trial.SweepId, ct).ConfigureAwait(false) is { State: SweepStatus.Pending or SweepStatus.Running } record)
                runtime = Runtime(record);
            if (runtime is null)
            {
                // The sweep is over: keep the point, nothing else follows from it.
                var kept = await store.AppendMetricAsync(trialId, token, point, ct).ConfigureAwait(false);
                return kept is MetricAppendResult.Appended or MetricAppendResult.Duplicate;
            }
            var spec = runtime.Spec;
            objective = point.Values.TryGetValue(spec.ObjectiveMetric, out var v) && double.IsFinite(v) ? v : null;
            updated = trial with
            {
                Epoch = Math.Max(trial.Epoch, point.Epoch),
                LatestMetric = objective ?? trial.LatestMetric,
                BestMetric = objective is { } o && spec.IsBetter(o, trial.BestMetric) ? o : trial.BestMetric,
            };
            var result = await store.AppendMetricAsync(trialId, token, point, new TrialUpdate(updated, trial.Version), ct).ConfigureAwait(false);
            if (result is MetricAppendResult.StaleToken or MetricAppendResult.UnknownTrial) return false;
            if (result == MetricAppendResult.Duplicate) return true; // a re-sent report: already counted
            if (result == MetricAppendResult.Appended)
            {
                updated = updated with { Version = trial.Version + 1 };
                break;
            }
            // Conflict: the trial changed since it was read (a heartbeat renewed the lease): again.
            if (attempt > 100) throw new InvalidOperationException($"trial {trialId}: too much contention");
        }
        var sweepId = updated.SweepId;
        if (events.HasWatchers(sweepId)) events.Publish(sweepId, new Proto.SweepEvent { Metric = Mapping.ToProto(trialId, point) });
        PublishTrial(updated);
        if (objective is not { } value) return true;

        await runtime.Gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            var actions = runtime.Searcher.OnValidation(updated.Index, point.Epoch, value);
            var spec = runtime.Spec;
            // Only a new best or an action is worth a sweep write; the searcher's own bookkeeping
            // of a report is saved with the next write (a restart replays at most a re-sent report).
            if (actions.Count > 0 || runtime.Best is not { } best || spec.IsBetter(value, best))
            {
                var fresh = await UpdateSweepAsync(sweepId, s => s with
                {
                    BestTrialId = spec.IsBetter(value, s.BestMetric) ? updated.Id : s.BestTrialId,
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
            await ApplyActionsAsync(sweepId, runtime, actions, ct).ConfigureAwait(false);
        }
        finally
        {
            runtime.Gate.Release();
        }
        return true;
    }

    /// <summary>Notes a stored checkpoint (called after the upload was verified).</summary>
    public async Task<bool> CheckpointStoredAsync(string trialId, long token, int epoch, CancellationToken ct)
    {
        var updated = await UpdateTrialAsync(trialId, t => t.FencingToken != token ? null : t with
        {
            CheckpointEpoch = Math.Max(t.CheckpointEpoch, epoch),
        }, ct).ConfigureAwait(false);
        return updated is not null;
    }

    /// <summary>Checks that <paramref name="token"/> is the trial's current token (for uploads and downloads).</summary>
    public async Task<TrialRecord?> CurrentAsync(string trialId, long token, CancellationToken ct)
    {
        var t = await store.GetTrialAsync(trialId, ct).ConfigureAwait(false);
        return t is not null && t.FencingToken == token && t.State == TrialStatus.Running ? t : null;
    }

    /// <summary>A worker reports a trial's outcome.</summary>
    public async Task TrialOutcomeAsync(string workerId, string trialId, long token, int rank, Proto.TrialStatus.Types.Outcome outcome, string message, CancellationToken ct)
    {
        switch (outcome)
        {
            case Proto.TrialStatus.Types.Outcome.Started:
                return;
            case Proto.TrialStatus.Types.Outcome.Completed:
                await EndTrialAsync(trialId, token, TrialStatus.Completed, null, ct).ConfigureAwait(false);
                break;
            case Proto.TrialStatus.Types.Outcome.FailedPermanently:
                await EndTrialAsync(trialId, token, TrialStatus.Failed, message, ct).ConfigureAwait(false);
                break;
            case Proto.TrialStatus.Types.Outcome.Failed:
                await RequeueAsync(trialId, token, $"failed on {workerId}: {message}", ct).ConfigureAwait(false);
                break;
            case Proto.TrialStatus.Types.Outcome.Drained:
                await HandBackAsync(trialId, token, $"handed back by {workerId}: {message}", ct).ConfigureAwait(false);
                break;
            case Proto.TrialStatus.Types.Outcome.Stopped:
                // A stop we asked for: the trial was already moved on (cancelled or re-queued).
                break;
            case Proto.TrialStatus.Types.Outcome.RankDone:
                // A non-zero rank is free again; the trial itself ends when rank 0 reports.
                break;
        }
        // Only this rank of this assignment: the trial may already have been given back to the
        // same worker, and the worker may run other ranks of it on its other GPUs.
        workers.Find(workerId)?.Detach(trialId, token, rank);
        workers.Signal();
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
        var now = Now;
        var attemptsLeft = true;
        var updated = await UpdateTrialAsync(trialId, t =>
        {
            if (t.State != TrialStatus.Running || t.FencingToken != token) return null;
            if (handedBack) t = t with { HandedBack = t.HandedBack + 1 };
            attemptsLeft = handedBack || t.CountedAttempts < _options.MaxTrialAttempts;
            return attemptsLeft
                ? t with { State = TrialStatus.Pending, WorkerIds = [], LeaseExpiresAt = null, Message = reason }
                : t with { State = TrialStatus.Failed, WorkerIds = [], LeaseExpiresAt = null, FinishedAt = now, Message = $"{reason} (attempt {t.CountedAttempts} of {_options.MaxTrialAttempts})" };
        }, ct).ConfigureAwait(false);
        if (updated is null) return;
        foreach (var id in updated.WorkerIds) workers.Find(id)?.Detach(trialId);
        foreach (var w in workers.All.Where(w => w.Trials.ContainsKey(trialId)))
        {
            w.Detach(trialId);
            w.Send(new Proto.CoordinatorMessage { Stop = new Proto.StopTrial { TrialId = trialId, Reason = reason } });
        }
        if (handedBack) Log.TrialHandedBack(logger, trialId, reason);
        else Log.TrialRequeued(logger, trialId, reason, attemptsLeft);
        PublishTrial(updated);
        if (!attemptsLeft) await AfterTrialEndedAsync(updated, succeeded: false, ct).ConfigureAwait(false);
        workers.Signal();
    }

    private async Task EndTrialAsync(string trialId, long token, TrialStatus state, string? message, CancellationToken ct)
    {
        var now = Now;
        var updated = await UpdateTrialAsync(trialId, t => t.State != TrialStatus.Running || t.FencingToken != token ? null : t with
        {
            State = state,
            WorkerIds = [],
            LeaseExpiresAt = null,
            FinishedAt = now,
            Message = message,
        }, ct).ConfigureAwait(false);
        if (updated is null) return;
        Log.TrialEnded(logger, trialId, state.ToString(), message ?? "");
        PublishTrial(updated);
        await AfterTrialEndedAsync(updated, state == TrialStatus.Completed, ct).ConfigureAwait(false);
    }

    private async Task AfterTrialEndedAsync(TrialRecord trial, bool succeeded, CancellationToken ct)
    {
        var sweep = await store.GetSweepAsync(trial.SweepId, ct).ConfigureAwait(false);
        if (sweep is null) return;
        var runtime = Runtime(sweep);
        await runtime.Gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            var actions = runtime.Searcher.OnTrialExited(trial.Index, succeeded);
            var fresh = await UpdateSweepAsync(sweep.Id, s => s with
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
        var now = Now;
        var create = actions.OfType<CreateTrial>().Select(a => NewTrial(sweepId, runtime.Spec, a, now)).ToList();
        if (create.Count > 0)
        {
            await store.AddTrialsAsync(sweepId, create, ct).ConfigureAwait(false);
            workers.Signal();
        }
        foreach (var stop in actions.OfType<StopTrial>())
        {
            var id = $"{sweepId}-t{stop.Index.ToString("0000", CultureInfo.InvariantCulture)}";
            await CancelTrialAsync(id, "stopped early by the searcher", ct).ConfigureAwait(false);
        }
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

    private async Task FinishSweepAsync(string sweepId, SweepStatus state, string message, CancellationToken ct)
    {
        var now = Now;
        var finished = await UpdateSweepAsync(sweepId, s => s.State is SweepStatus.Pending or SweepStatus.Running
            ? s with { State = state, FinishedAt = now, Message = message }
            : null, ct).ConfigureAwait(false);
        if (finished is null) return;
        Log.SweepFinished(logger, sweepId, state.ToString(), message);
        if (_runtimes.TryGetValue(sweepId, out var runtime)) runtime.Active = false;
        var reason = $"sweep {state.ToString().ToLowerInvariant()}";
        await CancelPendingAsync(sweepId, reason, ct).ConfigureAwait(false);
        // Running trials one by one: each has workers to stop.
        foreach (var trial in await store.ListTrialsPageAsync(sweepId, TrialPageQuery.First(int.MaxValue, TrialStatus.Running), ct).ConfigureAwait(false))
            await CancelTrialAsync(trial.Id, reason, ct).ConfigureAwait(false);
        PublishSweep(finished);
        _runtimes.TryRemove(sweepId, out _);
    }

    /// <summary>
    /// Cancels the sweep's pending trials in bulk: one read and one batch compare-and-set per page.
    /// A trial assigned meanwhile fails its compare-and-set and is cancelled on its own.
    /// </summary>
    private async Task CancelPendingAsync(string sweepId, string reason, CancellationToken ct)
    {
        const int Page = 5000;
        var now = Now;
        var after = -1;
        while (true)
        {
            var pending = await store.ListTrialsPageAsync(sweepId, new TrialPageQuery(after, Page, TrialStatus.Pending), ct).ConfigureAwait(false);
            if (pending.Count == 0) return;
            var cancelled = pending.Select(t => t with { State = TrialStatus.Cancelled, WorkerIds = [], LeaseExpiresAt = null, FinishedAt = now, Message = reason }).ToList();
            var applied = await store.TryUpdateTrialsAsync(sweepId, [.. cancelled.Select((t, i) => new TrialUpdate(t, pending[i].Version))], ct).ConfigureAwait(false);
            for (var i = 0; i < pending.Count; i++)
            {
                if (applied[i]) PublishTrial(cancelled[i] with { Version = pending[i].Version + 1 });
                else await CancelTrialAsync(pending[i].Id, reason, ct).ConfigureAwait(false);
            }
            after = pending[^1].Index;
        }
    }

    private async Task CancelTrialAsync(string trialId, string reason, CancellationToken ct)
    {
        var now = Now;
        var before = await store.GetTrialAsync(trialId, ct).ConfigureAwait(false);
        if (before is null || before.IsFinished) return;
        var updated = await UpdateTrialAsync(trialId, t => t.IsFinished ? null : t with
        {
            State = TrialStatus.Cancelled,
            WorkerIds = [],
            LeaseExpiresAt = null,
            FinishedAt = now,
            Message = reason,
        }, ct).ConfigureAwait(false);
        if (updated is null) return;
        foreach (var w in workers.All.Where(w => w.Trials.ContainsKey(trialId)))
        {
            w.Detach(trialId);
            w.Send(new Proto.CoordinatorMessage { Stop = new Proto.StopTrial { TrialId = trialId, Reason = reason } });
        }
        PublishTrial(updated);
        workers.Signal();
    }

    /// <summary>Compare-and-set loop: re-reads and re-applies <paramref name="change"/> until it sticks; null when the change declines.</summary>
    public async Task<TrialRecord?> UpdateTrialAsync(string trialId, Func<TrialRecord, TrialRecord?> change, CancellationToken ct)
    {
        for (var attempt = 0; ; attempt++)
        {
            var current = await store.GetTrialAsync(trialId, ct).ConfigureAwait(false);
            if (current is null) return null;
            var next = change(current);
            if (next is null) return null;
            if (await store.TryUpdateTrialAsync(next, current.Version, ct).ConfigureAwait(false))
                return next with { Version = current.Version + 1 };
            if (attempt > 100) throw new InvalidOperationException($"trial {trialId}: too much contention");
        }
    }

    private async Task<SweepRecord?> UpdateSweepAsync(string sweepId, Func<SweepRecord, SweepRecord?> change, CancellationToken ct)
    {
        for (var attempt = 0; ; attempt++)
        {
            var current = await store.GetSweepAsync(sweepId, ct).ConfigureAwait(false);
            if (current is null) return null;
            var next = change(current);
            if (next is null) return null;
            if (await store.TryUpdateSweepAsync(next, current.Version, ct).ConfigureAwait(false))
                return next with { Version = current.Version + 1 };
            if (attempt > 100) throw new InvalidOperationException($"sweep {sweepId}: too much contention");
        }
    }

    /// <summary>Whether anyone watches the sweep (events are built only then).</summary>
    public bool HasWatchers(string sweepId) => events.HasWatchers(sweepId);

    /// <summary>Tells the sweep's watchers about a trial's current state (and pending reason).</summary>
    public void PublishTrial(TrialRecord t)
    {
        // Building the event checks the checkpoint files: skip it when nobody watches.
        if (events.HasWatchers(t.SweepId)) events.Publish(t.SweepId, new Proto.SweepEvent { Trial = Mapping.ToProto(t, checkpoints, pendingReasons) });
    }


    private void PublishSweep(SweepRecord s) => events.Publish(s.Id, new Proto.SweepEvent { Sweep = Mapping.ToProto(s, null, null) });

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Sweep {SweepId} ({Name}) submitted with {Trials} trials")]
        public static partial void SweepSubmitted(ILogger logger, string sweepId, string name, int trials);

        [LoggerMessage(2, LogLevel.Information, "Sweep {SweepId} recovered from the state store")]
        public static partial void SweepRecovered(ILogger logger, string sweepId);

        [LoggerMessage(3, LogLevel.Information, "Trial {TrialId} attempt {Attempt} assigned to {Workers} (resume: {Resume})")]
        public static partial void TrialAssigned(ILogger logger, string trialId, int attempt, string workers, bool resume);

        [LoggerMessage(4, LogLevel.Warning, "Trial {TrialId} re-queued: {Reason} (attempts left: {AttemptsLeft})")]
        public static partial void TrialRequeued(ILogger logger, string trialId, string reason, bool attemptsLeft);

        [LoggerMessage(5, LogLevel.Information, "Trial {TrialId} ended {State} {Message}")]
        public static partial void TrialEnded(ILogger logger, string trialId, string state, string message);

        [LoggerMessage(6, LogLevel.Information, "Sweep {SweepId} {State}: {Message}")]
        public static partial void SweepFinished(ILogger logger, string sweepId, string state, string message);

        [LoggerMessage(7, LogLevel.Information, "Trial {TrialId} re-queued: {Reason} (not counted as an attempt)")]
        public static partial void TrialHandedBack(ILogger logger, string trialId, string reason);
    }
}

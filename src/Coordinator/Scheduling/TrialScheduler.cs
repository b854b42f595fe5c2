using Microsoft.Extensions.Options;
using Orchestrator.Coordinator.Domain;
using Orchestrator.Coordinator.Configuration;
using Orchestrator.Coordinator.State;
using Orchestrator.Coordinator.Sweeps;
using Orchestrator.Coordinator.Workers;
using Orchestrator.Sweeps;

namespace Orchestrator.Coordinator.Scheduling;

/// <summary>
/// Hands pending trials to free worker slots and takes trials back from workers whose leases ran
/// out. Sweeps are served first come, first served; within a sweep, trials in index order (a
/// re-queued trial keeps its place), never more running than the sweep's parallelTrials, and a
/// trial that needs W workers starts only when W ranks fit at once (no partial gang holds slots
/// idle). Where a gang fits is <see cref="Fleet"/>'s rule (GPUs per rank, one slot per GPU); why a
/// trial waits is recorded in <see cref="PendingReasons"/> on every pass.
/// </summary>
public sealed partial class TrialScheduler(
    IStateStore store,
    SweepManager sweeps,
    WorkerRegistry workers,
    PendingReasons pendingReasons,
    StoreResilience resilience,
    IOptions<CoordinatorOptions> options,
    TimeProvider clock,
    ILogger<TrialScheduler> logger) : BackgroundService
{
    private readonly SemaphoreSlim _wake = new(0, int.MaxValue);
    // After a restart, and after the store failed to answer, workers need a lease timeout to
    // reconnect (or get their waiting heartbeats through) and renew their leases before those count:
    // a trial is never taken back only because Redis was down.
    private DateTimeOffset _leasesCountFrom = clock.GetUtcNow();
    private DateTimeOffset _lastReasons = DateTimeOffset.MinValue;

    /// <summary>
    /// With every slot taken a pass can place nothing and only refreshes why trials wait: that
    /// happens this often rather than on every pass.
    /// </summary>
    public static readonly TimeSpan ReasonRefreshInterval = TimeSpan.FromSeconds(2);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        workers.Changed += Wake;
        try
        {
            await StoreResilience.ExecuteAsync(resilience.Recovery, sweeps.RecoverAsync, stoppingToken).ConfigureAwait(false);
            while (!stoppingToken.IsCancellationRequested)
            {
                try
                {
                    await PassAsync(stoppingToken).ConfigureAwait(false);
                }
                catch (Exception e) when (StoreResilience.IsUnavailable(e))
                {
                    // Not a retry: the next pass comes anyway. Leases count again a lease timeout after this.
                    _leasesCountFrom = clock.GetUtcNow();
                    Log.StoreUnavailable(logger, e.Message);
                }
                // Sleep until signalled (a worker freed up, a sweep arrived) or the interval passes
                // (on the injected clock, like every time the scheduler reads).
                using (var interval = new CancellationTokenSource(options.Value.SchedulerInterval, clock))
                using (var wait = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken, interval.Token))
                {
                    try
                    {
                        await _wake.WaitAsync(wait.Token).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException) when (!stoppingToken.IsCancellationRequested)
                    {
                    }
                }
                while (_wake.CurrentCount > 0) await _wake.WaitAsync(0, stoppingToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        finally
        {
            workers.Changed -= Wake;
        }
    }

    private void Wake() => _wake.Release();

    /// <summary>Expired leases taken back per pass; more wait for the next pass.</summary>
    public const int ExpiredLeasesPerPass = 256;

    /// <summary>Pending trials whose reason is sent to a sweep's watchers when it changes (the rest show it when listed).</summary>
    private const int ReasonEventsPerSweep = 200;

    /// <summary>
    /// One scheduling pass: expire leases, then fill free slots and note why the rest wait. Its
    /// cost does not grow with the number of trials: expired leases and the first pending trials
    /// come from the store's indexes, the active sweeps and their specs from memory, and the
    /// counts per state from the store's counters.
    /// </summary>
    public async Task PassAsync(CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        if (now - _leasesCountFrom >= options.Value.LeaseTimeout)
        {
            var expired = await store.ListExpiredLeasesAsync(now, ExpiredLeasesPerPass, ct).ConfigureAwait(false);
            if (clock.GetUtcNow() - now > options.Value.HeartbeatInterval)
            {
                // The store answered late: it was down, and the client held the command until it
                // came back (heartbeats waited just as long). Leases count again a lease timeout from now.
                _leasesCountFrom = clock.GetUtcNow();
                expired = [];
            }
            foreach (var t in expired)
            {
                foreach (var id in t.WorkerIds)
                {
                    if (workers.Find(id) is { } lapsed) lapsed.LeaseLapsedAt = now;
                }
                await sweeps.RequeueAsync(t.Id, t.FencingToken, $"lease expired (no heartbeat from {string.Join(", ", t.WorkerIds)})", ct).ConfigureAwait(false);
            }
        }

        var fleet = new Fleet(workers.All.OrderBy(w => w.ConnectedAt).Select(w => Capacity(w, now)).ToList());
        if (fleet.FreeRanks(0) == 0 && now - _lastReasons < ReasonRefreshInterval) return;
        _lastReasons = now;
        var waits = new Dictionary<string, SweepWait>(StringComparer.Ordinal);
        foreach (var sweepId in sweeps.PausedSweeps())
        {
            var pending = (await store.CountTrialsAsync(sweepId, ct).ConfigureAwait(false)).Pending;
            if (pending > 0) waits[sweepId] = new SweepWait(new PendingReason(PendingReasonKind.SweepPaused, "the sweep is paused (orch resume starts it again)"), pending);
        }
        foreach (var sweep in sweeps.ActiveSweeps())
        {
            var spec = sweep.Spec;
            var counts = await store.CountTrialsAsync(sweep.Id, ct).ConfigureAwait(false);
            var pending = counts.Pending;
            if (pending == 0) continue;
            var running = counts.Running;
            var room = Math.Max(0, spec.ParallelTrials - running);
            // At most one trial per free rank can start, so that many candidates (and one more, to
            // learn why the next one waits) is all a pass reads.
            var candidates = room == 0 ? [] : await store.ListPendingTrialsAsync(sweep.Id, (int)Math.Min(room, fleet.FreeRanks(0) + 1), ct).ConfigureAwait(false);
            PendingReason? blocked = null;
            foreach (var trial in candidates)
            {
                if (running >= spec.ParallelTrials) break;
                // The whole gang at once; a re-queued trial may restart on fewer ranks, down to minWorkers.
                if (!fleet.TryPlace(Request(spec, trial), out var ranks, out var reason))
                {
                    blocked = reason!;
                    break;
                }
                var gang = ranks.Select(r => new GangRank(workers.Find(r.WorkerId)!, r.Gpus)).ToList();
                if (gang.Any(r => r.Worker is null)) continue; // it disconnected during the pass
                var assigned = await sweeps.AssignAsync(trial, gang, ct).ConfigureAwait(false);
                if (assigned is null) continue;
                fleet.Reserve(ranks);
                running++;
                pending--;
            }
            if (pending == 0) continue;
            if (blocked is null && running >= spec.ParallelTrials)
                blocked = new PendingReason(PendingReasonKind.ParallelLimit, $"parallelTrials reached ({running} running)");
            // Room and candidates left, all placed: what the next trial would wait for.
            if (blocked is null && !fleet.TryPlace(new GangRequest(Math.Max(1, spec.Workers), spec.GpusPerWorker, Math.Max(1, spec.MinWorkers)), out _, out var next))
                blocked = next;
            if (blocked is not null) waits[sweep.Id] = new SweepWait(blocked, pending);
        }
        // Watchers hear of a sweep whose reason changed, through its first pending trials; a
        // trial that stopped waiting was assigned or ended, which published it already.
        foreach (var sweepId in pendingReasons.Replace(waits))
        {
            if (!sweeps.HasWatchers(sweepId)) continue;
            foreach (var trial in await store.ListPendingTrialsAsync(sweepId, ReasonEventsPerSweep, ct).ConfigureAwait(false)) sweeps.PublishTrial(trial);
        }
    }

    private static GangRequest Request(ValidatedSweep spec, TrialRecord trial) =>
        new(Math.Max(1, spec.Workers), spec.GpusPerWorker, Math.Max(1, spec.MinWorkers), MayShrink: trial.Attempt > 0);

    /// <summary>
    /// What a worker can take now. A worker silent for a lease timeout is presumed hung even if its
    /// stream is open: its trials were just re-queued, and handing them (or others) back to it
    /// would burn attempts.
    /// </summary>
    private WorkerCapacity Capacity(WorkerConnection w, DateTimeOffset now)
    {
        var gpus = w.Resources.Gpus.Select(g => g.Index).ToList();
        var held = w.Ranks.SelectMany(r => r.Gpus).ToHashSet();
        var free = gpus.Where(g => !held.Contains(g)).ToList();
        // A rank that holds no GPU on a GPU worker (one re-attached from an older worker) still takes a slot.
        var unplaced = w.Ranks.Count(r => r.Gpus.Count == 0);
        if (gpus.Count > 0 && unplaced > 0) free = free.Take(Math.Max(0, free.Count - unplaced)).ToList();
        var eligible = !w.Draining && now - w.LastHeartbeat < options.Value.LeaseTimeout
                       && !(w.LeaseLapsedAt is { } lapsed && w.LastHeartbeat <= lapsed);
        return new WorkerCapacity(w.Id, gpus, free, w.IsBusy, eligible, !string.IsNullOrEmpty(w.DataEndpoint));
    }

    private static partial class Log
    {
        [LoggerMessage(LogEventIds.Scheduling + 1, LogLevel.Warning, "State store unavailable, retrying: {Message}")]
        public static partial void StoreUnavailable(ILogger logger, string message);
    }
}

using Microsoft.Extensions.Options;
using Orchestrator.Coordinator.Domain;
using Orchestrator.Coordinator.Configuration;
using Orchestrator.Coordinator.State;
using Orchestrator.Coordinator.Sweeps;
using Orchestrator.Coordinator.Workers;

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
    IOptions<CoordinatorOptions> options,
    TimeProvider clock,
    ILogger<TrialScheduler> logger) : BackgroundService
{
    private readonly SemaphoreSlim _wake = new(0, int.MaxValue);
    // After a restart, workers need a moment to reconnect and re-attach before their leases count.
    private readonly DateTimeOffset _startedAt = clock.GetUtcNow();
    private DateTimeOffset _lastLeaseScan = DateTimeOffset.MinValue;
    private DateTimeOffset _lastReasons = DateTimeOffset.MinValue;

    /// <summary>
    /// With every slot taken a pass can place nothing and only refreshes why trials wait: that
    /// happens this often rather than on every pass (it lists the trials of every active sweep).
    /// </summary>
    public static readonly TimeSpan ReasonRefreshInterval = TimeSpan.FromSeconds(2);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        workers.Changed += Wake;
        try
        {
            await RetryAsync(sweeps.RecoverAsync, stoppingToken).ConfigureAwait(false);
            while (!stoppingToken.IsCancellationRequested)
            {
                try
                {
                    await PassAsync(stoppingToken).ConfigureAwait(false);
                }
                catch (Exception e) when (e is StateStoreUnavailableException or TimeoutException)
                {
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

    private async Task RetryAsync(Func<CancellationToken, Task> action, CancellationToken ct)
    {
        for (var delay = TimeSpan.FromMilliseconds(200); ; delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromSeconds(5).Ticks)))
        {
            try
            {
                await action(ct).ConfigureAwait(false);
                return;
            }
            catch (StateStoreUnavailableException e)
            {
                Log.StoreUnavailable(logger, e.Message);
                await Task.Delay(delay, clock, ct).ConfigureAwait(false);
            }
        }
    }

    /// <summary>One scheduling pass: expire leases, then fill free slots and note why the rest wait.</summary>
    public async Task PassAsync(CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        var active = (await store.ListSweepsAsync(ct).ConfigureAwait(false))
            .Where(s => s.State is SweepStatus.Pending or SweepStatus.Running)
            .OrderBy(s => s.CreatedAt)
            .ToList();
        // Leases are checked a few times per timeout, not on every pass: listing the trials of a
        // large sweep is the expensive part of a pass.
        var leaseScanDue = now - _startedAt >= options.Value.LeaseTimeout && now - _lastLeaseScan >= options.Value.LeaseTimeout / 4;
        if (leaseScanDue) _lastLeaseScan = now;
        foreach (var sweep in leaseScanDue ? active : [])
        {
            var trials = await store.ListTrialsAsync(sweep.Id, ct).ConfigureAwait(false);
            foreach (var t in trials.Where(t => t.State == TrialStatus.Running && t.LeaseExpiresAt < now))
            {
                await sweeps.RequeueAsync(t.Id, t.FencingToken, $"lease expired (no heartbeat from {string.Join(", ", t.WorkerIds)})", ct).ConfigureAwait(false);
            }
        }

        var fleet = new Fleet(workers.All.OrderBy(w => w.ConnectedAt).Select(w => Capacity(w, now)).ToList());
        if (fleet.FreeRanks(0) == 0 && now - _lastReasons < ReasonRefreshInterval) return;
        _lastReasons = now;
        var reasons = new Dictionary<string, PendingReason>(StringComparer.Ordinal);
        var waiting = new List<TrialRecord>();
        foreach (var sweep in active)
        {
            var spec = sweeps.SpecOf(sweep);
            var trials = await store.ListTrialsAsync(sweep.Id, ct).ConfigureAwait(false);
            var running = trials.Count(t => t.State == TrialStatus.Running);
            // Every trial of a sweep asks for the same resources: once one waits, the rest wait for the same reason.
            PendingReason? blocked = null;
            foreach (var trial in trials.Where(t => t.State == TrialStatus.Pending).OrderBy(t => t.Index))
            {
                if (blocked is null && running >= spec.ParallelTrials)
                    blocked = new PendingReason(PendingReasonKind.ParallelLimit, $"parallelTrials reached ({running} running)");
                if (blocked is not null)
                {
                    reasons[trial.Id] = blocked;
                    waiting.Add(trial);
                    continue;
                }
                // The whole gang at once; a re-queued trial may restart on fewer ranks, down to minWorkers.
                var request = new GangRequest(Math.Max(1, spec.Workers), spec.GpusPerWorker, Math.Max(1, spec.MinWorkers), MayShrink: trial.Attempt > 0);
                if (!fleet.TryPlace(request, out var ranks, out var reason))
                {
                    blocked = reason!;
                    reasons[trial.Id] = blocked;
                    waiting.Add(trial);
                    continue;
                }
                var gang = ranks.Select(r => new GangRank(workers.Find(r.WorkerId)!, r.Gpus)).ToList();
                if (gang.Any(r => r.Worker is null)) continue; // it disconnected during the pass
                var assigned = await sweeps.AssignAsync(trial, gang, ct).ConfigureAwait(false);
                if (assigned is null) continue;
                fleet.Reserve(ranks);
                running++;
            }
        }
        // Watchers hear of new and changed reasons; a trial that left the set was assigned or ended,
        // which published it already.
        var changed = pendingReasons.Replace(reasons).ToHashSet(StringComparer.Ordinal);
        foreach (var trial in waiting.Where(t => changed.Contains(t.Id))) sweeps.PublishTrial(trial);
    }

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
        var eligible = !w.Draining && now - w.LastHeartbeat < options.Value.LeaseTimeout;
        return new WorkerCapacity(w.Id, gpus, free, w.IsBusy, eligible, !string.IsNullOrEmpty(w.DataEndpoint));
    }

    private static partial class Log
    {
        [LoggerMessage(LogEventIds.Scheduling + 1, LogLevel.Warning, "State store unavailable, retrying: {Message}")]
        public static partial void StoreUnavailable(ILogger logger, string message);
    }
}

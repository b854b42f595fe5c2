using Microsoft.Extensions.Options;
using Orchestrator.Coordinator.Domain;
using Orchestrator.Coordinator.Hosting;
using Orchestrator.Coordinator.State;
using Orchestrator.Coordinator.Sweeps;
using Orchestrator.Coordinator.Workers;

namespace Orchestrator.Coordinator.Scheduling;

/// <summary>
/// Hands pending trials to idle workers and takes trials back from workers whose leases ran out.
/// Sweeps are served first come, first served; within a sweep, trials in index order (a re-queued
/// trial keeps its place), never more running than the sweep's parallelTrials, and a trial that
/// needs W workers starts only when W are idle at once (no partial gang holds workers idle).
/// </summary>
public sealed partial class TrialScheduler(
    IStateStore store,
    SweepManager sweeps,
    WorkerRegistry workers,
    IOptions<CoordinatorOptions> options,
    TimeProvider clock,
    ILogger<TrialScheduler> logger) : BackgroundService
{
    private readonly SemaphoreSlim _wake = new(0, int.MaxValue);
    // After a restart, workers need a moment to reconnect and re-attach before their leases count.
    private readonly DateTimeOffset _startedAt = clock.GetUtcNow();
    private DateTimeOffset _lastLeaseScan = DateTimeOffset.MinValue;

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
                // Sleep until signalled (a worker freed up, a sweep arrived) or the interval passes.
                await _wake.WaitAsync(options.Value.SchedulerInterval, stoppingToken).ConfigureAwait(false);
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

    /// <summary>One scheduling pass: expire leases, then fill idle workers.</summary>
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

        // A worker silent for a lease timeout is presumed hung even if its stream is open: its
        // trials were just re-queued, and handing them (or others) back to it would burn attempts.
        var idle = workers.Idle().Where(w => now - w.LastHeartbeat < options.Value.LeaseTimeout).ToList();
        foreach (var sweep in active)
        {
            if (idle.Count == 0) break;
            var spec = sweeps.SpecOf(sweep);
            var trials = await store.ListTrialsAsync(sweep.Id, ct).ConfigureAwait(false);
            var running = trials.Count(t => t.State == TrialStatus.Running);
            foreach (var trial in trials.Where(t => t.State == TrialStatus.Pending).OrderBy(t => t.Index))
            {
                if (running >= spec.ParallelTrials) break;
                // The whole gang at once; a re-queued trial may restart on fewer ranks, down to minWorkers.
                var gang = Math.Max(1, spec.Workers);
                if (idle.Count < gang && trial.Attempt > 0 && idle.Count >= Math.Max(1, spec.MinWorkers)) gang = idle.Count;
                if (gang > 1 && idle.Take(gang).Any(w => string.IsNullOrEmpty(w.DataEndpoint))) break; // a worker without a data endpoint cannot join a gang
                if (idle.Count < gang) break;
                var chosen = idle.Take(gang).ToList();
                var assigned = await sweeps.AssignAsync(trial, chosen, ct).ConfigureAwait(false);
                if (assigned is null) continue;
                idle.RemoveRange(0, gang);
                running++;
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(20, LogLevel.Warning, "State store unavailable, retrying: {Message}")]
        public static partial void StoreUnavailable(ILogger logger, string message);
    }
}

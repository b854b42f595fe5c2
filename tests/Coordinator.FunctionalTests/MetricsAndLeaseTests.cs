using Orchestrator.Protocol.V1;
using Orchestrator.TestSupport;
using Outcome = Orchestrator.Protocol.V1.TrialStatus.Types.Outcome;

namespace Orchestrator.Coordinator.FunctionalTests;

/// <summary>
/// Metric reports, leases and fencing tokens, seen from fake workers over real streams (reconnects,
/// Welcome). Lease expiry, attempts and fencing as rules are TrialLifecycleTests, on a fake clock.
/// </summary>
public sealed class MetricsAndLeaseTests
{
    private static readonly TimeSpan AfterLeaseTimeout = TestCoordinator.LeaseTimeout * 3;

    [Fact]
    public async Task A_report_with_the_current_token_is_stored_once_and_a_stale_token_is_refused_with_StopTrial()
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        await using var stale = await coordinator.ConnectWorkerAsync("w-stale");
        var sweep = await coordinator.SubmitAsync(Specs.Grid("metrics", [0.05]));
        var first = await stale.NextAssignmentAsync();
        var trialId = first.Lease.TrialId;

        await stale.ReportAsync(first.Lease, step: 1, epoch: 1, valAccuracy: 0.5);
        await stale.ReportAsync(first.Lease, step: 2, epoch: 2, valAccuracy: 0.4);
        Assert.Empty(await stale.SyncAsync());
        var trial = await coordinator.TrialAsync(sweep.Id, trialId);
        Assert.Equal(0.4, trial.LatestMetric);
        Assert.Equal(0.5, trial.BestMetric);
        Assert.Equal(2, trial.Epoch);
        var view = await coordinator.GetSweepAsync(sweep.Id);
        Assert.Equal(trialId, view.BestTrialId);
        Assert.Equal(0.5, view.BestMetric);

        // The same step again (a worker re-sending after a reconnect) changes nothing.
        await stale.ReportAsync(first.Lease, step: 2, epoch: 2, valAccuracy: 0.9);
        Assert.Empty(await stale.SyncAsync());
        var points = await coordinator.Store.GetMetricsAsync(trialId, CancellationToken.None).DefaultTimeout();
        Assert.Equal([1L, 2L], points.Select(p => p.Step));
        Assert.Equal(0.4, points[1].Values["val_accuracy"]);
        trial = await coordinator.TrialAsync(sweep.Id, trialId);
        Assert.Equal(0.4, trial.LatestMetric);
        Assert.Equal(0.5, trial.BestMetric);

        // The worker hangs (no heartbeats, stream open): the trial is re-queued and reassigned.
        await using var fresh = await coordinator.ConnectWorkerAsync("w-fresh");
        stale.StopHeartbeats();
        var second = await fresh.NextAssignmentAsync(AfterLeaseTimeout);
        Assert.Equal(trialId, second.Lease.TrialId);
        Assert.True(second.Lease.FencingToken > first.Lease.FencingToken);
        var requeueStop = await stale.NextStopAsync();
        Assert.Equal(trialId, requeueStop.TrialId);

        // The stale worker reports with its old token: refused, and told to stop.
        await stale.ReportAsync(first.Lease, step: 3, epoch: 2, valAccuracy: 0.99);
        var stop = await stale.NextStopAsync();
        Assert.Equal(trialId, stop.TrialId);
        points = await coordinator.Store.GetMetricsAsync(trialId, CancellationToken.None).DefaultTimeout();
        Assert.Equal([1L, 2L], points.Select(p => p.Step));
        view = await coordinator.GetSweepAsync(sweep.Id);
        Assert.Equal(0.5, view.BestMetric);

        // The new owner's reports count.
        await fresh.ReportAsync(second.Lease, step: 3, epoch: 2, valAccuracy: 0.7);
        Assert.Empty(await fresh.SyncAsync());
        view = await coordinator.GetSweepAsync(sweep.Id);
        Assert.Equal(0.7, view.BestMetric);
    }

    [Fact]
    public async Task A_worker_that_reconnects_within_the_lease_timeout_keeps_its_trial_and_token()
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        var before = await coordinator.ConnectWorkerAsync("w1");
        var sweep = await coordinator.SubmitAsync(Specs.Grid("reconnect", [0.05]));
        var assign = await before.NextAssignmentAsync();
        await before.CloseAsync();

        await using var after = await coordinator.ConnectWorkerAsync("w1", [assign.Lease]);
        Assert.Empty(after.Welcome.StopTrialIds);
        // Well past the lease timeout, heartbeats on the new stream keep the lease: no stop, no re-queue.
        await after.ExpectNothingAsync(AfterLeaseTimeout);
        var trial = await coordinator.TrialAsync(sweep.Id, assign.Lease.TrialId);
        Assert.Equal(TrialState.Running, trial.State);
        Assert.Equal(1, trial.Attempt);
        Assert.Equal(["w1"], trial.WorkerIds);

        // The old token is still the trial's token: reports and the outcome are accepted.
        await after.ReportAsync(assign.Lease, step: 1, epoch: 2, valAccuracy: 0.6);
        await after.StatusAsync(assign.Lease, Outcome.Completed);
        var done = await coordinator.WaitForSweepAsync(sweep.Id, s => s.State == SweepState.Completed);
        Assert.Equal(assign.Lease.TrialId, done.BestTrialId);
        await before.DisposeAsync();
    }

    [Fact]
    public async Task A_worker_that_reconnects_after_its_trial_was_reassigned_is_told_to_stop_it_in_Welcome()
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        var before = await coordinator.ConnectWorkerAsync("w1");
        var sweep = await coordinator.SubmitAsync(Specs.Grid("reassigned", [0.05]));
        var assign = await before.NextAssignmentAsync();
        await before.CloseAsync();
        await using var other = await coordinator.ConnectWorkerAsync("w2");
        var reassigned = await other.NextAssignmentAsync(AfterLeaseTimeout);
        Assert.Equal(assign.Lease.TrialId, reassigned.Lease.TrialId);

        await using var after = await coordinator.ConnectWorkerAsync("w1", [assign.Lease]);

        Assert.Equal([assign.Lease.TrialId], after.Welcome.StopTrialIds);
        var trial = await coordinator.TrialAsync(sweep.Id, assign.Lease.TrialId);
        Assert.Equal(["w2"], trial.WorkerIds);
        Assert.Equal(2, trial.Attempt);
        await before.DisposeAsync();
    }
}

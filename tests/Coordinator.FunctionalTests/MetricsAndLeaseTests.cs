using Orchestrator.Protocol.V1;
using Orchestrator.TestSupport;
using Outcome = Orchestrator.Protocol.V1.TrialStatus.Types.Outcome;

namespace Orchestrator.Coordinator.FunctionalTests;

/// <summary>Metric reports, leases and fencing tokens, seen from fake workers.</summary>
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
    public async Task A_worker_that_stops_heartbeating_loses_its_trial_to_another_worker_with_a_higher_token_and_attempt_2()
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        await using var silent = await coordinator.ConnectWorkerAsync("w-silent");
        var sweep = await coordinator.SubmitAsync(Specs.Grid("lease", [0.05]));
        var first = await silent.NextAssignmentAsync();
        Assert.Equal(1, first.Attempt);
        await using var other = await coordinator.ConnectWorkerAsync("w-other");

        silent.StopHeartbeats();
        // Within the lease timeout nothing happens yet.
        await other.ExpectNothingAsync(TestCoordinator.LeaseTimeout / 2);
        var second = await other.NextAssignmentAsync(AfterLeaseTimeout);

        Assert.Equal(first.Lease.TrialId, second.Lease.TrialId);
        Assert.True(second.Lease.FencingToken > first.Lease.FencingToken, $"token {second.Lease.FencingToken} after {first.Lease.FencingToken}");
        Assert.Equal(2, second.Attempt);
        var trial = await coordinator.TrialAsync(sweep.Id, first.Lease.TrialId);
        Assert.Equal(TrialState.Running, trial.State);
        Assert.Equal(2, trial.Attempt);
        Assert.Equal(["w-other"], trial.WorkerIds);
        Assert.Equal(first.Lease.TrialId, (await silent.NextStopAsync()).TrialId);
    }

    [Fact]
    public async Task A_trial_whose_workers_keep_dying_fails_after_MaxTrialAttempts_and_fails_the_sweep_past_maxFailedTrials()
    {
        await using var coordinator = await TestCoordinator.StartAsync(o => o.MaxTrialAttempts = 2);
        var a = await coordinator.ConnectWorkerAsync("w-a");
        var sweep = await coordinator.SubmitAsync(Specs.Grid("attempts", [0.05, 0.1], maxFailedTrials: 0));
        var firstAttempt = await a.NextAssignmentAsync();
        Assert.Equal($"{sweep.Id}-t0000", firstAttempt.Lease.TrialId);
        await a.CloseAsync(); // the worker process died

        var b = await coordinator.ConnectWorkerAsync("w-b");
        var secondAttempt = await b.NextAssignmentAsync(AfterLeaseTimeout);
        Assert.Equal(firstAttempt.Lease.TrialId, secondAttempt.Lease.TrialId);
        Assert.Equal(2, secondAttempt.Attempt);
        await b.CloseAsync();

        var failed = await coordinator.WaitForTrialAsync(sweep.Id, firstAttempt.Lease.TrialId, t => t.State != TrialState.Running && t.State != TrialState.Pending);
        Assert.Equal(TrialState.Failed, failed.State);
        Assert.Equal(2, failed.Attempt);
        Assert.Contains("attempt 2 of 2", failed.Message, StringComparison.Ordinal);
        var view = await coordinator.WaitForSweepAsync(sweep.Id, s => s.State != SweepState.Running && s.State != SweepState.Pending);
        Assert.Equal(SweepState.Failed, view.State);
        Assert.Contains("maxFailedTrials", view.Message, StringComparison.Ordinal);
        // The sweep's other trial never ran. It is cancelled as the sweep ends, just after the
        // sweep's own state is written, so a busy machine may show the sweep failed a moment before.
        var other = await coordinator.WaitForTrialAsync(sweep.Id, $"{sweep.Id}-t0001", t => t.State != TrialState.Pending);
        Assert.Equal(TrialState.Cancelled, other.State);
        Assert.Equal(0, other.Attempt);
        await a.DisposeAsync();
        await b.DisposeAsync();
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

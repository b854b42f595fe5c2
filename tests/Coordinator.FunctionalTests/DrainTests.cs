using Orchestrator.Protocol.V1;
using Orchestrator.TestSupport;
using Outcome = Orchestrator.Protocol.V1.TrialStatus.Types.Outcome;

namespace Orchestrator.Coordinator.FunctionalTests;

/// <summary>Workers that are shutting down (SIGTERM): no new trials for them, and their hand-backs are not failures.</summary>
public sealed class DrainTests
{
    [Fact]
    public async Task A_trial_handed_back_by_a_draining_worker_is_requeued_at_once_and_never_counts_as_a_failed_attempt()
    {
        // One attempt only: a re-queue that counted would fail the trial at once.
        await using var coordinator = await TestCoordinator.StartAsync(o => o.MaxTrialAttempts = 1);
        await using var w1 = await coordinator.ConnectWorkerAsync("w1");
        var sweep = await coordinator.SubmitAsync(Specs.Grid("drain", [0.05], maxFailedTrials: 0));
        var first = await w1.NextAssignmentAsync();
        Assert.Equal(1, first.Attempt);

        await w1.StartDrainingAsync();
        await w1.ReportAsync(first.Lease, step: 10, epoch: 1, valAccuracy: 0.5);
        await w1.StatusAsync(first.Lease, Outcome.Drained, "stopped after epoch 1, the worker is shutting down");
        // The coordinator handled all of it, and gave the draining worker nothing new.
        Assert.DoesNotContain(await w1.SyncAsync(), m => m.KindCase == CoordinatorMessage.KindOneofCase.Assign);
        var pending = await coordinator.TrialAsync(sweep.Id, first.Lease.TrialId);
        Assert.Equal(TrialState.Pending, pending.State);
        Assert.Equal(1, pending.Attempt);
        Assert.Equal(1, pending.Epoch);
        Assert.Contains("handed back by w1", pending.Message, StringComparison.Ordinal);
        Assert.Equal("draining", (await coordinator.Sweeps.ListWorkersAsync(new ListWorkersRequest()).ResponseAsync.DefaultTimeout())
            .Workers.Single(w => w.Id == "w1").State);

        // A second hand-back: two assignments already, still not failed.
        await using var w2 = await coordinator.ConnectWorkerAsync("w2");
        var second = await w2.NextAssignmentAsync(TestCoordinator.LeaseTimeout);
        Assert.Equal(first.Lease.TrialId, second.Lease.TrialId);
        Assert.Equal(2, second.Attempt);
        await w2.StartDrainingAsync();
        await w2.StatusAsync(second.Lease, Outcome.Drained, "stopped after epoch 1, the worker is shutting down");
        await w2.SyncAsync();
        Assert.Equal(TrialState.Pending, (await coordinator.TrialAsync(sweep.Id, first.Lease.TrialId)).State);

        // A real failure still counts: with one attempt allowed, the first one fails the trial.
        await using var w3 = await coordinator.ConnectWorkerAsync("w3");
        var third = await w3.NextAssignmentAsync(TestCoordinator.LeaseTimeout);
        Assert.Equal(3, third.Attempt);
        await w3.StatusAsync(third.Lease, Outcome.Failed, "out of memory");
        var failed = await coordinator.WaitForTrialAsync(sweep.Id, first.Lease.TrialId, t => t.State != TrialState.Pending && t.State != TrialState.Running);
        Assert.Equal(TrialState.Failed, failed.State);
        Assert.Contains("attempt 1 of 1", failed.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_draining_worker_gets_no_trial_and_an_assignment_that_crossed_its_notice_comes_back_without_an_attempt()
    {
        await using var coordinator = await TestCoordinator.StartAsync(o => o.MaxTrialAttempts = 1);
        await using var draining = await coordinator.ConnectWorkerAsync("w-draining");
        await draining.StartDrainingAsync();
        await draining.SyncAsync();
        var sweep = await coordinator.SubmitAsync(Specs.Grid("drain-idle", [0.05]));
        await draining.ExpectNothingAsync(TestCoordinator.LeaseTimeout);

        await using var other = await coordinator.ConnectWorkerAsync("w-other");
        var assigned = await other.NextAssignmentAsync();
        Assert.Equal(1, assigned.Attempt);
        // The worker began draining as this assignment travelled; it hands it back untouched.
        await other.StartDrainingAsync();
        await other.StatusAsync(assigned.Lease, Outcome.Drained, "not started, the worker is shutting down");
        await other.SyncAsync();
        var trial = await coordinator.TrialAsync(sweep.Id, assigned.Lease.TrialId);
        Assert.Equal(TrialState.Pending, trial.State);
        Assert.Equal(1, trial.Attempt);
        // Both workers drain: the trial waits for a worker that takes trials.
        await draining.ExpectNothingAsync(TestCoordinator.LeaseTimeout);
        await other.ExpectNothingAsync(TimeSpan.FromMilliseconds(100));
        await using var fresh = await coordinator.ConnectWorkerAsync("w-fresh");
        Assert.Equal(assigned.Lease.TrialId, (await fresh.NextAssignmentAsync()).Lease.TrialId);
    }
}

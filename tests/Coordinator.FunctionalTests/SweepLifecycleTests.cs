using Orchestrator.Protocol.V1;
using Orchestrator.TestSupport;
using Outcome = Orchestrator.Protocol.V1.TrialStatus.Types.Outcome;

namespace Orchestrator.Coordinator.FunctionalTests;

/// <summary>Trial outcomes, cancellation and the objective's target.</summary>
public sealed class SweepLifecycleTests
{
    [Fact]
    public async Task Completing_every_trial_completes_the_sweep_with_the_best_trial_set()
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        await using var w1 = await coordinator.ConnectWorkerAsync("w1");
        await using var w2 = await coordinator.ConnectWorkerAsync("w2");
        var sweep = await coordinator.SubmitAsync(Specs.Grid("complete", [0.01, 0.1], parallelTrials: 2));
        var a1 = await w1.NextAssignmentAsync();
        var a2 = await w2.NextAssignmentAsync();

        await w1.ReportAsync(a1.Lease, step: 10, epoch: 1, valAccuracy: 0.61);
        await w2.ReportAsync(a2.Lease, step: 10, epoch: 1, valAccuracy: 0.83);
        await w1.StatusAsync(a1.Lease, Outcome.Completed);
        await w2.StatusAsync(a2.Lease, Outcome.Completed);

        var done = await coordinator.WaitForSweepAsync(sweep.Id, s => s.State is not (SweepState.Pending or SweepState.Running));
        Assert.Equal(SweepState.Completed, done.State);
        Assert.Equal(2, done.TrialsCompleted);
        Assert.Equal(a2.Lease.TrialId, done.BestTrialId);
        Assert.Equal(0.83, done.BestMetric);
        var best = await coordinator.Sweeps.GetBestTrialAsync(new GetBestTrialRequest { SweepId = sweep.Id }).ResponseAsync.DefaultTimeout();
        Assert.Equal(a2.Lease.TrialId, best.Id);
        Assert.Equal(TrialState.Completed, best.State);
    }

    [Fact]
    public async Task FAILED_PERMANENTLY_fails_the_trial_without_a_retry()
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        await using var w1 = await coordinator.ConnectWorkerAsync("w1");
        await using var w2 = await coordinator.ConnectWorkerAsync("w2");
        var sweep = await coordinator.SubmitAsync(Specs.Grid("permanent", [0.05]));
        var assign = await w1.NextAssignmentAsync();

        await w1.StatusAsync(assign.Lease, Outcome.FailedPermanently, "corrupt data file x.bin");

        var trial = await coordinator.WaitForTrialAsync(sweep.Id, assign.Lease.TrialId, t => t.State != TrialState.Running);
        Assert.Equal(TrialState.Failed, trial.State);
        Assert.Equal(1, trial.Attempt);
        Assert.Contains("corrupt data file x.bin", trial.Message, StringComparison.Ordinal);
        // Two idle workers, and neither gets it again.
        await Task.WhenAll(w1.ExpectNothingAsync(TimeSpan.FromSeconds(1)), w2.ExpectNothingAsync(TimeSpan.FromSeconds(1)));
        Assert.Equal(TrialState.Failed, (await coordinator.TrialAsync(sweep.Id, assign.Lease.TrialId)).State);
    }

    [Fact]
    public async Task FAILED_requeues_the_trial_for_another_attempt_with_a_new_token()
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        await using var worker = await coordinator.ConnectWorkerAsync("w1");
        var sweep = await coordinator.SubmitAsync(Specs.Grid("transient", [0.05]));
        var first = await worker.NextAssignmentAsync();

        await worker.StatusAsync(first.Lease, Outcome.Failed, "out of memory");

        // (The coordinator may echo a StopTrial for the attempt that failed; the next assignment follows.)
        var next = await worker.NextAsync();
        while (next.KindCase == CoordinatorMessage.KindOneofCase.Stop && next.Stop.TrialId == first.Lease.TrialId) next = await worker.NextAsync();
        Assert.Equal(CoordinatorMessage.KindOneofCase.Assign, next.KindCase);
        var second = next.Assign;
        Assert.Equal(first.Lease.TrialId, second.Lease.TrialId);
        Assert.Equal(2, second.Attempt);
        Assert.True(second.Lease.FencingToken > first.Lease.FencingToken);
        var trial = await coordinator.TrialAsync(sweep.Id, first.Lease.TrialId);
        Assert.Equal(TrialState.Running, trial.State);
        Assert.Equal(2, trial.Attempt);
        // The coordinator counts the worker as busy with the new attempt (so it gets nothing else).
        var workers = await coordinator.Sweeps.ListWorkersAsync(new ListWorkersRequest()).ResponseAsync.DefaultTimeout();
        var view = Assert.Single(workers.Workers);
        Assert.Equal("busy", view.State);
        Assert.Equal(first.Lease.TrialId, view.TrialId);
    }

    [Fact]
    public async Task Cancelling_a_sweep_cancels_pending_trials_and_stops_running_ones_within_a_second()
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        await using var w1 = await coordinator.ConnectWorkerAsync("w1");
        await using var w2 = await coordinator.ConnectWorkerAsync("w2");
        var sweep = await coordinator.SubmitAsync(Specs.Grid("cancel", [0.01, 0.02, 0.03], parallelTrials: 2));
        var a1 = await w1.NextAssignmentAsync();
        var a2 = await w2.NextAssignmentAsync();

        var cancelled = await coordinator.Sweeps.CancelSweepAsync(new CancelSweepRequest { SweepId = sweep.Id }).ResponseAsync.DefaultTimeout();
        var stops = await Task.WhenAll(w1.NextStopAsync(TimeSpan.FromSeconds(1)), w2.NextStopAsync(TimeSpan.FromSeconds(1)));

        Assert.Equal(a1.Lease.TrialId, stops[0].TrialId);
        Assert.Equal(a2.Lease.TrialId, stops[1].TrialId);
        Assert.Equal(SweepState.Cancelled, cancelled.State);
        Assert.Equal(3, cancelled.TrialsCancelled);
        Assert.All(await coordinator.TrialsAsync(sweep.Id), t => Assert.Equal(TrialState.Cancelled, t.State));
        // The stopped workers acknowledge; nothing else is assigned.
        await w1.StatusAsync(a1.Lease, Outcome.Stopped);
        await w2.StatusAsync(a2.Lease, Outcome.Stopped);
        await w1.ExpectNothingAsync(TimeSpan.FromMilliseconds(500));
        Assert.Equal(SweepState.Cancelled, (await coordinator.GetSweepAsync(sweep.Id)).State);
    }

    [Fact]
    public async Task A_metric_reaching_the_target_completes_the_sweep_and_stops_the_other_running_trials()
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        await using var w1 = await coordinator.ConnectWorkerAsync("w1");
        await using var w2 = await coordinator.ConnectWorkerAsync("w2");
        var sweep = await coordinator.SubmitAsync(Specs.Grid("target", [0.01, 0.02, 0.03], parallelTrials: 2, target: 0.9));
        var a1 = await w1.NextAssignmentAsync();
        var a2 = await w2.NextAssignmentAsync();

        await w1.ReportAsync(a1.Lease, step: 5, epoch: 1, valAccuracy: 0.5);
        await w2.ReportAsync(a2.Lease, step: 5, epoch: 1, valAccuracy: 0.95);

        var stop = await w1.NextStopAsync();
        Assert.Equal(a1.Lease.TrialId, stop.TrialId);
        var done = await coordinator.WaitForSweepAsync(sweep.Id, s => s.State is not (SweepState.Pending or SweepState.Running));
        Assert.Equal(SweepState.Completed, done.State);
        Assert.Equal(a2.Lease.TrialId, done.BestTrialId);
        Assert.Equal(0.95, done.BestMetric);
        Assert.Contains("target", done.Message, StringComparison.Ordinal);
        var trials = await coordinator.TrialsAsync(sweep.Id);
        Assert.Equal(TrialState.Cancelled, trials.Single(t => t.Id == a1.Lease.TrialId).State);
        Assert.Equal(TrialState.Cancelled, trials.Single(t => t.Index == 2).State);
    }
}

using Orchestrator.Protocol.V1;
using Orchestrator.Trials;
using Orchestrator.TestSupport;
using Outcome = Orchestrator.Protocol.V1.TrialStatus.Types.Outcome;

namespace Orchestrator.Coordinator.FunctionalTests;

/// <summary>How the coordinator hands trials to connected workers.</summary>
public sealed class SchedulingTests
{
    [Fact]
    public async Task A_grid_with_two_parallel_trials_never_runs_more_than_two_at_once_on_three_idle_workers()
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        var workers = new List<FakeWorker>();
        try
        {
            for (var i = 0; i < 3; i++) workers.Add(await coordinator.ConnectWorkerAsync($"w{i}"));
            var sweep = await coordinator.SubmitAsync(Specs.Grid2x2("grid-parallel", parallelTrials: 2));
            Assert.Equal(4, sweep.TrialsTotal);

            // Every assignment from any worker, in arrival order.
            var assignments = new List<(FakeWorker Worker, AssignTrial Assign)>();
            var running = new Dictionary<string, (FakeWorker Worker, AssignTrial Assign)>();
            var pendingReads = workers.ToDictionary(w => w, w => w.NextAssignmentAsync());
            async Task<(FakeWorker, AssignTrial)> NextAssignmentAsync()
            {
                var done = await Task.WhenAny(pendingReads.Values).DefaultTimeout();
                var worker = pendingReads.Single(p => p.Value == done).Key;
                pendingReads[worker] = worker.NextAssignmentAsync();
                return (worker, await done);
            }

            for (var i = 0; i < 2; i++)
            {
                var (w, a) = await NextAssignmentAsync();
                assignments.Add((w, a));
                running[a.Lease.TrialId] = (w, a);
            }
            while (assignments.Count < 4)
            {
                // Two run, the third worker idle (the limit itself: TrialSchedulerTests, on a fake clock).
                Assert.DoesNotContain(pendingReads.Values, t => t.IsCompleted);
                var trials = await coordinator.TrialsAsync(sweep.Id);
                Assert.Equal(2, trials.Count(t => t.State == TrialState.Running));

                var first = running.Values.First();
                await first.Worker.StatusAsync(first.Assign.Lease, Outcome.Completed);
                running.Remove(first.Assign.Lease.TrialId);
                var (w, a) = await NextAssignmentAsync();
                assignments.Add((w, a));
                running[a.Lease.TrialId] = (w, a);
                Assert.True(running.Count <= 2);
                Assert.Equal(running.Count, running.Values.Select(r => r.Worker).Distinct().Count());
            }
            foreach (var (w, a) in running.Values) await w.StatusAsync(a.Lease, Outcome.Completed);

            var finished = await coordinator.WaitForSweepAsync(sweep.Id, s => s.State == SweepState.Completed);
            Assert.Equal(4, finished.TrialsCompleted);

            var trialsById = (await coordinator.TrialsAsync(sweep.Id)).ToDictionary(t => t.Id);
            Assert.Equal(4, assignments.Select(a => a.Assign.Lease.TrialId).Distinct().Count());
            foreach (var (_, a) in assignments)
            {
                var trial = trialsById[a.Lease.TrialId];
                Assert.Equal(sweep.Id, a.SweepId);
                Assert.True(a.Lease.FencingToken > 0);
                Assert.Equal(0, a.Rank);
                Assert.Equal(1, a.WorldSize);
                Assert.Equal(1, a.Attempt);
                Assert.False(a.Resume);
                // The trial file is complete and has this trial's sampled values applied: built at
                // assignment from the sweep's spec, not stored with each trial.
                Assert.Null((await coordinator.Store.GetTrialAsync(trial.Id, CancellationToken.None).DefaultTimeout())!.TrialYaml);
                var spec = TrialSpecYaml.Parse(a.TrialYaml, "trial.yaml");
                Assert.Equal(double.Parse(trial.Parameters["optimizer.lr"], System.Globalization.CultureInfo.InvariantCulture), spec.Optimizer.Lr);
                Assert.Equal(double.Parse(trial.Parameters["model.dropout"], System.Globalization.CultureInfo.InvariantCulture), spec.Model.Dropout);
                Assert.Equal("synthetic", spec.Data.Name);
                Assert.Equal("simple-cnn", spec.Model.Name);
            }
            // The grid's four points, each once.
            var points = trialsById.Values.Select(t => (t.Parameters["optimizer.lr"], t.Parameters["model.dropout"])).ToHashSet();
            Assert.Equal(4, points.Count);
        }
        finally
        {
            foreach (var w in workers) await w.DisposeAsync();
        }
    }

    [Fact]
    public async Task Trials_of_an_earlier_sweep_are_assigned_before_those_of_a_later_sweep()
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        var first = await coordinator.SubmitAsync(Specs.Grid("first", [0.01, 0.02]));
        var second = await coordinator.SubmitAsync(Specs.Grid("second", [0.03, 0.04]));
        await using var worker = await coordinator.ConnectWorkerAsync("w1");

        var order = new List<string>();
        for (var i = 0; i < 4; i++)
        {
            var a = await worker.NextAssignmentAsync();
            order.Add(a.Lease.TrialId);
            await worker.StatusAsync(a.Lease, Outcome.Completed);
        }

        Assert.Equal([$"{first.Id}-t0000", $"{first.Id}-t0001", $"{second.Id}-t0000", $"{second.Id}-t0001"], order);
        await coordinator.WaitForSweepAsync(second.Id, s => s.State == SweepState.Completed);
    }
}

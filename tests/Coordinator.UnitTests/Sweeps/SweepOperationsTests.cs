using Orchestrator.Coordinator.Domain;
using Orchestrator.Coordinator.Scheduling;
using Orchestrator.Coordinator.Sweeps;
using Orchestrator.Coordinator.Workers;

namespace Orchestrator.Coordinator.UnitTests.Sweeps;

/// <summary>What users do to a running sweep: pause, resume, stop a trial, extend the budget.</summary>
public sealed class SweepOperationsTests
{
    private static readonly CancellationToken None = CancellationToken.None;

    private static string Random(int trials, int parallel) => $$"""
        name: ops
        data: { name: synthetic }
        model: { name: simple-cnn }
        trial: { epochs: 3, batchSize: 32 }
        parameters:
          optimizer.lr: { min: 0.001, max: 0.1, distribution: log-uniform }
        search: { method: random, maxTrials: {{trials}}, parallelTrials: {{parallel}}, seed: 3 }
        objective: { metric: val_accuracy, goal: maximize }
        """;

    [Fact]
    public async Task A_paused_sweep_hands_its_running_trials_back_starts_none_and_says_why_until_it_resumes()
    {
        await using var core = await CoordinatorCore.StartAsync();
        var w1 = core.Connect("w1");
        var w2 = core.Connect("w2");
        var sweep = await core.SubmitAsync(Random(trials: 3, parallel: 2));
        await core.PassAsync();
        var a1 = CoordinatorCore.Assigned(w1);
        CoordinatorCore.Assigned(w2);

        var paused = await core.Sweeps.PauseAsync(sweep.Id, None);
        Assert.Equal(SweepStatus.Paused, paused!.State);
        var trials = await core.TrialsAsync(sweep.Id);
        Assert.All(trials, t => Assert.Equal(TrialStatus.Pending, t.State));
        // Handed back, not failed: the attempt does not count.
        Assert.Equal(1, (await core.TrialAsync(a1.TrialId)).HandedBack);
        Assert.Contains(CoordinatorCore.Sent(w1), c => c is StopOrder s && s.TrialId == a1.TrialId);
        // Free workers, pending trials, and nothing starts; each pending trial says why.
        await core.OutcomeAsync(w1, a1, TrialOutcome.Stopped);
        await core.PassAsync();
        Assert.Empty(CoordinatorCore.Sent(w1).OfType<TrialAssignment>());
        Assert.Equal(PendingReasonKind.SweepPaused, core.Reasons.Of(trials[0])!.Kind);
        // A late report of the handed-back run cannot move the paused sweep's trial on.
        Assert.Equal(SweepStatus.Paused, (await core.Sweeps.PauseAsync(sweep.Id, None))!.State);

        var resumed = await core.Sweeps.ResumeAsync(sweep.Id, None);
        Assert.Equal(SweepStatus.Running, resumed!.State);
        await core.PassAsync();
        Assert.Single(CoordinatorCore.Sent(w1).OfType<TrialAssignment>());
        Assert.Null(core.Reasons.Of(await core.TrialAsync(a1.TrialId)));
    }

    [Fact]
    public async Task A_paused_sweep_stays_paused_across_a_restart()
    {
        await using var first = await CoordinatorCore.StartAsync();
        first.Connect("w1");
        var sweep = await first.SubmitAsync(Random(trials: 2, parallel: 1));
        await first.Sweeps.PauseAsync(sweep.Id, None);
        await using var core = await first.RestartAsync();
        var w = core.Connect("w1");
        await core.PassAsync();
        Assert.Empty(CoordinatorCore.Sent(w));
        await core.Sweeps.ResumeAsync(sweep.Id, None);
        await core.PassAsync();
        Assert.Single(CoordinatorCore.Sent(w).OfType<TrialAssignment>());
    }

    [Fact]
    public async Task A_user_stops_a_trial_it_ends_stopped_early_with_its_metrics_and_its_worker_is_free()
    {
        await using var core = await CoordinatorCore.StartAsync();
        var w1 = core.Connect("w1");
        var sweep = await core.SubmitAsync(Random(trials: 2, parallel: 1));
        await core.PassAsync();
        var a = CoordinatorCore.Assigned(w1);
        Assert.True(await core.ReportAsync(a, step: 10, epoch: 1, valAccuracy: 0.6));

        var stopped = await core.Sweeps.StopTrialAsync(a.TrialId, None);
        Assert.Equal((TrialStatus.Stopped, 1, 0.6, "stopped by a user"), (stopped!.State, stopped.Epoch, stopped.BestMetric, stopped.Message));
        var order = Assert.Single(CoordinatorCore.Sent(w1).OfType<StopOrder>());
        Assert.True(order.AfterCheckpoint);
        // The checkpoint of the epoch it reported is still taken; a later one is not, nor are more reports.
        Assert.NotNull(await core.Sweeps.AcceptsCheckpointAsync(a.TrialId, a.FencingToken, 1, None));
        Assert.Null(await core.Sweeps.AcceptsCheckpointAsync(a.TrialId, a.FencingToken, 2, None));
        Assert.False(await core.ReportAsync(a, step: 20, epoch: 2, valAccuracy: 0.9));
        // The sweep's best counts it; the next trial starts on the freed worker.
        Assert.Equal(a.TrialId, (await core.SweepAsync(sweep.Id)).BestTrialId);
        await core.OutcomeAsync(w1, a, TrialOutcome.Stopped);
        await core.PassAsync();
        Assert.Single(CoordinatorCore.Sent(w1).OfType<TrialAssignment>());

        var again = await Assert.ThrowsAsync<SweepOperationException>(() => core.Sweeps.StopTrialAsync(a.TrialId, None));
        Assert.Contains("already ended (stopped)", again.Message, StringComparison.Ordinal);
        Assert.Null(await core.Sweeps.StopTrialAsync("sw-none-t0000", None));
    }

    [Fact]
    public async Task Extending_a_completed_random_sweep_reopens_it_with_more_trials_and_a_grid_cannot_be_extended()
    {
        await using var core = await CoordinatorCore.StartAsync();
        var w = core.Connect("w1");
        var sweep = await core.SubmitAsync(Random(trials: 1, parallel: 1));
        await core.PassAsync();
        var a = CoordinatorCore.Assigned(w);
        await core.ReportAsync(a, step: 10, epoch: 3, valAccuracy: 0.7);
        await core.OutcomeAsync(w, a, TrialOutcome.Completed);
        Assert.Equal(SweepStatus.Completed, (await core.SweepAsync(sweep.Id)).State);

        var extended = await core.Sweeps.ExtendAsync(sweep.Id, 2, None);
        Assert.Equal((SweepStatus.Running, (DateTimeOffset?)null), (extended!.State, extended.FinishedAt));
        var trials = await core.TrialsAsync(sweep.Id);
        Assert.Equal([TrialStatus.Completed, TrialStatus.Pending, TrialStatus.Pending], trials.Select(t => t.State));
        // New samples, not the first one again.
        Assert.Equal(3, trials.Select(t => t.Parameters["optimizer.lr"]).Distinct().Count());
        await core.PassAsync();
        var next = CoordinatorCore.Assigned(w);
        await core.ReportAsync(next, step: 10, epoch: 3, valAccuracy: 0.8);
        await core.OutcomeAsync(w, next, TrialOutcome.Completed);
        await core.PassAsync();
        var last = CoordinatorCore.Assigned(w);
        await core.ReportAsync(last, step: 10, epoch: 3, valAccuracy: 0.75);
        await core.OutcomeAsync(w, last, TrialOutcome.Completed);
        var done = await core.SweepAsync(sweep.Id);
        Assert.Equal((SweepStatus.Completed, next.TrialId), (done.State, done.BestTrialId));

        var grid = await core.SubmitAsync(CoordinatorCore.Grid("grid", trials: 2));
        var refused = await Assert.ThrowsAsync<SweepOperationException>(() => core.Sweeps.ExtendAsync(grid.Id, 1, None));
        Assert.Contains("grid", refused.Message, StringComparison.Ordinal);
        await core.Sweeps.CancelAsync(grid.Id, None);
        await Assert.ThrowsAsync<SweepOperationException>(() => core.Sweeps.ExtendAsync(grid.Id, 1, None));
        await Assert.ThrowsAsync<SweepOperationException>(() => core.Sweeps.PauseAsync(grid.Id, None));
        Assert.Null(await core.Sweeps.ExtendAsync("sw-none", 1, None));
    }

    [Fact]
    public async Task A_diverged_trial_is_the_worst_score_at_an_asha_rung_and_is_stopped_there()
    {
        await using var core = await CoordinatorCore.StartAsync();
        var workers = new[] { core.Connect("w1"), core.Connect("w2") };
        var sweep = await core.SubmitAsync("""
            name: diverged
            data: { name: synthetic }
            model: { name: simple-cnn }
            trial: { epochs: 4, batchSize: 32 }
            parameters:
              optimizer.lr: { min: 0.001, max: 0.1, distribution: log-uniform }
            search: { method: random, maxTrials: 2, parallelTrials: 2, seed: 3, earlyStopping: { method: asha, reductionFactor: 2 } }
            objective: { metric: val_loss, goal: minimize }
            """);
        await core.PassAsync();
        var a = workers.Select(CoordinatorCore.Assigned).ToList();
        Task<bool> Report(TrialAssignment t, Dictionary<string, double> values) => core.Sweeps.ReportMetricAsync(t.TrialId, t.FencingToken,
            new MetricPointRecord { Step = 10, Epoch = 1, Values = values, Time = core.Clock.GetUtcNow() }, None);

        Assert.True(await Report(a[0], new() { ["val_loss"] = 0.9, ["val_accuracy"] = 0.6 }));
        // The worker leaves a NaN loss out; the epoch's accuracy is there: the run diverged.
        Assert.True(await Report(a[1], new() { ["val_accuracy"] = 0.1 }));

        var diverged = await core.TrialAsync(a[1].TrialId);
        Assert.Equal(TrialStatus.Stopped, diverged.State);
        Assert.Contains("val_loss NaN", diverged.Message, StringComparison.Ordinal);
        Assert.Null(diverged.BestMetric);
        Assert.Equal(a[0].TrialId, (await core.SweepAsync(sweep.Id)).BestTrialId);
    }

    private static string Tpe(string warmStartFrom, string parameter = "optimizer.lr") => $$"""
        name: warm
        data: { name: synthetic }
        model: { name: simple-cnn }
        trial: { epochs: 3, batchSize: 32 }
        parameters:
          {{parameter}}: { min: 0.001, max: 0.1, distribution: log-uniform }
        search: { method: tpe, maxTrials: 4, parallelTrials: 1, seed: 3, tpe: { startupTrials: 2 }, warmStartFrom: {{warmStartFrom}} }
        objective: { metric: val_accuracy, goal: maximize }
        """;

    [Fact]
    public async Task A_tpe_sweep_warm_starts_from_an_earlier_sweeps_results_over_the_same_parameters_only()
    {
        await using var core = await CoordinatorCore.StartAsync();
        var w = core.Connect("w1");
        var earlier = await core.SubmitAsync(Random(trials: 2, parallel: 1));
        foreach (var accuracy in new[] { 0.6, 0.8 })
        {
            await core.PassAsync();
            var a = CoordinatorCore.Assigned(w);
            await core.ReportAsync(a, step: 10, epoch: 3, valAccuracy: accuracy);
            await core.OutcomeAsync(w, a, TrialOutcome.Completed);
        }

        var warm = await core.SubmitAsync(Tpe(earlier.Id));
        // Both results are kept with the searcher: a restart does not need the earlier sweep.
        using var state = System.Text.Json.JsonDocument.Parse(warm.SearcherState!);
        var prior = state.RootElement.GetProperty("prior");
        Assert.Equal([0.6, 0.8], prior.EnumerateArray().Select(o => o.GetProperty("objective").GetDouble()));
        var lrs = (await core.TrialsAsync(earlier.Id)).Select(t => t.Parameters["optimizer.lr"]).ToList();
        Assert.Equal(lrs, prior.EnumerateArray().Select(o => o.GetProperty("parameters").GetProperty("optimizer.lr").GetString()));

        var missing = await Assert.ThrowsAsync<Specs.SpecException>(() => core.SubmitAsync(Tpe("sw-00000000")));
        Assert.Equal("search.warmStartFrom: no sweep 'sw-00000000'", missing.Message);
        var other = await Assert.ThrowsAsync<Specs.SpecException>(() => core.SubmitAsync(Tpe(earlier.Id, parameter: "model.dropout")));
        Assert.StartsWith($"search.warmStartFrom: sweep {earlier.Id} searched optimizer.lr; this sweep searches model.dropout", other.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Extending_the_epochs_of_a_running_sweep_hands_running_trials_back_and_every_assignment_trains_the_new_epochs()
    {
        await using var core = await CoordinatorCore.StartAsync();
        var w1 = core.Connect("w1");
        var w2 = core.Connect("w2");
        var sweep = await core.SubmitAsync(Random(trials: 3, parallel: 2));
        await core.PassAsync();
        var done = CoordinatorCore.Assigned(w1);
        var running = CoordinatorCore.Assigned(w2);
        await core.ReportAsync(done, step: 30, epoch: 3, valAccuracy: 0.7);
        var latest = core.Checkpoints.PathOf(sweep.Id, done.TrialId, Checkpoints.CheckpointSlot.Latest);
        Directory.CreateDirectory(Path.GetDirectoryName(latest)!);
        await File.WriteAllTextAsync(latest, "weights");
        await core.Sweeps.CheckpointStoredAsync(done.TrialId, done.FencingToken, 3, None);
        await core.OutcomeAsync(w1, done, TrialOutcome.Completed);
        // A completed trial among the best keeps its latest checkpoint, to train on from it.
        Assert.True(File.Exists(latest));

        var extended = await core.Sweeps.ExtendEpochsAsync(sweep.Id, 5, None);
        Assert.Equal((SweepStatus.Running, 5), (extended!.State, extended.Epochs));
        var trials = (await core.TrialsAsync(sweep.Id)).ToDictionary(t => t.Id);
        Assert.Equal((TrialStatus.Pending, 5), (trials[done.TrialId].State, trials[done.TrialId].Epochs));
        Assert.Contains("training on to 5 epochs", trials[done.TrialId].Message, StringComparison.Ordinal);
        // The running trial went back to the queue without counting an attempt, and its worker was told to stop.
        Assert.Equal((TrialStatus.Pending, 1), (trials[running.TrialId].State, trials[running.TrialId].HandedBack));
        Assert.Single(CoordinatorCore.Sent(w2).OfType<StopOrder>());

        await core.OutcomeAsync(w2, running, TrialOutcome.Stopped);
        await core.PassAsync();
        var assignments = new[] { CoordinatorCore.Assigned(w1), CoordinatorCore.Assigned(w2) };
        Assert.All(assignments, a => Assert.Contains("epochs: 5", a.TrialYaml, StringComparison.Ordinal));
        var resumed = Assert.Single(assignments, a => a.TrialId == done.TrialId);
        Assert.True(resumed.Resume);
        Assert.All(await core.TrialsAsync(sweep.Id), t => Assert.Equal(5, t.Epochs));

        // The same epochs again, or fewer: refused with the reason.
        var again = await Assert.ThrowsAsync<SweepOperationException>(() => core.Sweeps.ExtendEpochsAsync(sweep.Id, 5, None));
        Assert.Contains("train 5 epochs already", again.Message, StringComparison.Ordinal);
        var fewer = await Assert.ThrowsAsync<SweepOperationException>(() => core.Sweeps.ExtendEpochsAsync(sweep.Id, 4, None));
        Assert.Contains("trial.epochs: 4 is not more than the trials' epochs now (5)", fewer.Message, StringComparison.Ordinal);
        Assert.Null(await core.Sweeps.ExtendEpochsAsync("sw-none", 9, None));
    }

    [Fact]
    public async Task A_completed_sweep_without_a_kept_checkpoint_or_a_cancelled_sweep_cannot_train_on()
    {
        await using var core = await CoordinatorCore.StartAsync();
        var w = core.Connect("w1");
        var sweep = await core.SubmitAsync(Random(trials: 1, parallel: 1));
        await core.PassAsync();
        var a = CoordinatorCore.Assigned(w);
        await core.ReportAsync(a, step: 10, epoch: 3, valAccuracy: 0.7);
        await core.OutcomeAsync(w, a, TrialOutcome.Completed);

        var none = await Assert.ThrowsAsync<SweepOperationException>(() => core.Sweeps.ExtendEpochsAsync(sweep.Id, 6, None));
        Assert.Contains("no completed trial has a checkpoint", none.Message, StringComparison.Ordinal);
        var after = await core.SweepAsync(sweep.Id);
        Assert.Equal((SweepStatus.Completed, (int?)null), (after.State, after.Epochs));

        var other = await core.SubmitAsync(Random(trials: 2, parallel: 1));
        await core.Sweeps.CancelAsync(other.Id, None);
        var cancelled = await Assert.ThrowsAsync<SweepOperationException>(() => core.Sweeps.ExtendEpochsAsync(other.Id, 6, None));
        Assert.Contains("has ended (cancelled)", cancelled.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Readers_of_a_trial_stopped_between_two_epochs_wait_for_its_checkpoint_until_its_worker_says_it_stopped()
    {
        await using var core = await CoordinatorCore.StartAsync();
        var w = core.Connect("w1");
        var sweep = await core.SubmitAsync(Random(trials: 2, parallel: 1));
        await core.PassAsync();
        var a = CoordinatorCore.Assigned(w);
        await core.ReportAsync(a, step: 10, epoch: 1, valAccuracy: 0.6);
        await core.Sweeps.StopTrialAsync(a.TrialId, None);

        var wait = core.Checkpoints.WaitForExpectedAsync(a.TrialId, TimeSpan.FromSeconds(30), None);
        await Task.Delay(100);
        Assert.False(wait.IsCompleted);
        // The upload of the judged epoch lands, then the worker says it stopped: readers go on.
        await core.Sweeps.CheckpointStoredAsync(a.TrialId, a.FencingToken, 1, None);
        Assert.False(wait.IsCompleted);
        await core.OutcomeAsync(w, a, TrialOutcome.Stopped);
        await wait.WaitAsync(TimeSpan.FromSeconds(5));

        // A trial stopped before it ran has no upload to wait for.
        var pending = (await core.TrialsAsync(sweep.Id)).Single(t => t.State == TrialStatus.Pending);
        await core.Sweeps.StopTrialAsync(pending.Id, None);
        Assert.True(core.Checkpoints.WaitForExpectedAsync(pending.Id, TimeSpan.FromSeconds(30), None).IsCompleted);

        // A worker that never says so (it died) is waited for only so long.
        var other = await core.SubmitAsync(Random(trials: 1, parallel: 1));
        await core.PassAsync();
        var b = Assert.Single(CoordinatorCore.Sent(w).OfType<TrialAssignment>());
        await core.Sweeps.StopTrialAsync(b.TrialId, None);
        await core.Checkpoints.WaitForExpectedAsync(b.TrialId, TimeSpan.FromMilliseconds(50), None).WaitAsync(TimeSpan.FromSeconds(5));
        Assert.True(core.Checkpoints.WaitForExpectedAsync(b.TrialId, TimeSpan.FromSeconds(30), None).IsCompleted);
        Assert.Equal(SweepStatus.Completed, (await core.SweepAsync(other.Id)).State);
    }
}

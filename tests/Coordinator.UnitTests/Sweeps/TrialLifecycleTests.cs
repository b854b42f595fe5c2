using Orchestrator.Coordinator.Domain;
using Orchestrator.Coordinator.Events;
using Orchestrator.Coordinator.Sweeps;
using Orchestrator.Coordinator.Workers;

namespace Orchestrator.Coordinator.UnitTests.Sweeps;

/// <summary>
/// The trial state machine on the embedded store and a fake clock: leases, fencing, re-queues and
/// their attempts, hand-backs, cancel. No server, no sleeps: time moves only when a test moves it.
/// </summary>
public sealed class TrialLifecycleTests
{
    private static readonly CancellationToken None = CancellationToken.None;

    [Fact]
    public async Task A_trial_remembers_the_epoch_of_its_best_objective_value_not_of_its_latest()
    {
        await using var core = await CoordinatorCore.StartAsync();
        var w1 = core.Connect("w1");
        await core.SubmitAsync(CoordinatorCore.Grid("best-epoch", trials: 1));
        await core.PassAsync();
        var lease = CoordinatorCore.Assigned(w1);

        Assert.True(await core.ReportAsync(lease, step: 10, epoch: 1, valAccuracy: 0.6));
        Assert.True(await core.ReportAsync(lease, step: 20, epoch: 2, valAccuracy: 0.8));
        Assert.True(await core.ReportAsync(lease, step: 30, epoch: 3, valAccuracy: 0.7));

        var trial = await core.TrialAsync(lease.TrialId);
        Assert.Equal((0.8, 2, 0.7, 3), (trial.BestMetric, trial.BestEpoch, trial.LatestMetric, trial.Epoch));
    }

    [Fact]
    public async Task An_expired_lease_requeues_the_trial_and_the_next_worker_gets_attempt_2_with_a_higher_token()
    {
        await using var core = await CoordinatorCore.StartAsync();
        var w1 = core.Connect("w1");
        var sweep = await core.SubmitAsync(CoordinatorCore.Grid("lease", trials: 1));
        await core.PassAsync();
        var first = CoordinatorCore.Assigned(w1);
        var running = await core.TrialAsync(first.TrialId);
        Assert.Equal((TrialStatus.Running, 1, 1L), (running.State, running.Attempt, running.FencingToken));
        Assert.Equal(core.Clock.GetUtcNow() + core.Options.LeaseTimeout, running.LeaseExpiresAt);

        // Just before the lease runs out nothing happens; just after, the next pass re-queues it.
        await core.AdvanceAsync(core.Options.LeaseTimeout - TimeSpan.FromSeconds(1));
        await core.PassAsync();
        Assert.Equal(TrialStatus.Running, (await core.TrialAsync(first.TrialId)).State);
        await core.AdvanceAsync(TimeSpan.FromSeconds(2));
        await core.PassAsync();

        var requeued = await core.TrialAsync(first.TrialId);
        Assert.Equal(TrialStatus.Pending, requeued.State);
        Assert.Contains("lease expired (no heartbeat from w1)", requeued.Message, StringComparison.Ordinal);
        // The silent worker is told to stop and is not given the trial back.
        Assert.Equal(new StopOrder(first.TrialId, requeued.Message!), Assert.Single(CoordinatorCore.Sent(w1)));
        Assert.Empty(w1.Trials);

        var w2 = core.Connect("w2");
        await core.PassAsync();
        var second = CoordinatorCore.Assigned(w2);
        Assert.Equal(first.TrialId, second.TrialId);
        Assert.Equal(2, second.Attempt);
        Assert.Equal(2L, second.FencingToken);
        Assert.Equal(SweepStatus.Running, (await core.SweepAsync(sweep.Id)).State);
    }

    [Fact]
    public async Task Heartbeats_renew_the_lease_so_a_live_worker_keeps_its_trial_past_the_timeout()
    {
        await using var core = await CoordinatorCore.StartAsync();
        var w1 = core.Connect("w1");
        await core.SubmitAsync(CoordinatorCore.Grid("renew", trials: 1));
        await core.PassAsync();
        var assignment = CoordinatorCore.Assigned(w1);

        for (var i = 0; i < 5; i++)
        {
            await core.AdvanceAsync(core.Options.LeaseTimeout / 2, w1);
            await core.PassAsync();
        }

        var trial = await core.TrialAsync(assignment.TrialId);
        Assert.Equal((TrialStatus.Running, 1L), (trial.State, trial.FencingToken));
        Assert.Equal(core.Clock.GetUtcNow() + core.Options.LeaseTimeout, trial.LeaseExpiresAt);
        Assert.Empty(CoordinatorCore.Sent(w1));
    }

    [Fact]
    public async Task Every_write_with_a_stale_token_is_refused_and_changes_nothing()
    {
        await using var core = await CoordinatorCore.StartAsync();
        var w1 = core.Connect("w1");
        await core.SubmitAsync(CoordinatorCore.Grid("fencing", trials: 1));
        await core.PassAsync();
        var stale = CoordinatorCore.Assigned(w1);
        await core.AdvanceAsync(core.Options.LeaseTimeout + TimeSpan.FromSeconds(1));
        await core.PassAsync();
        var w2 = core.Connect("w2");
        await core.PassAsync();
        var current = CoordinatorCore.Assigned(w2);
        Assert.True(current.FencingToken > stale.FencingToken);
        var before = await core.TrialAsync(current.TrialId);

        Assert.False(await core.ReportAsync(stale, step: 10, epoch: 1, valAccuracy: 0.9));
        Assert.False(await core.Trials.RenewLeaseAsync("w1", stale.TrialId, stale.FencingToken, None));
        Assert.Null(await core.Trials.CheckpointStoredAsync(stale.TrialId, stale.FencingToken, epoch: 1, None));
        Assert.Null(await core.Trials.CurrentAsync(stale.TrialId, stale.FencingToken, None));
        Assert.False(await core.OutcomeAsync(w1, stale, TrialOutcome.Completed));
        Assert.False(await core.OutcomeAsync(w1, stale, TrialOutcome.Failed, "late"));
        Assert.False(await core.OutcomeAsync(w1, stale, TrialOutcome.Drained, "late"));

        var after = await core.TrialAsync(current.TrialId);
        Assert.Equal((before.Version, before.State, before.Epoch, before.CheckpointEpoch), (after.Version, after.State, after.Epoch, after.CheckpointEpoch));
        Assert.Empty(await core.Store.GetMetricsAsync(current.TrialId, None));
        // The current holder's writes still count.
        Assert.True(await core.ReportAsync(current, step: 10, epoch: 1, valAccuracy: 0.9));
        Assert.NotNull(await core.Trials.CurrentAsync(current.TrialId, current.FencingToken, None));
        Assert.Equal(0.9, (await core.TrialAsync(current.TrialId)).BestMetric);
    }

    [Fact]
    public async Task A_trial_whose_leases_keep_expiring_fails_after_MaxTrialAttempts_and_fails_the_sweep_past_maxFailedTrials()
    {
        await using var core = await CoordinatorCore.StartAsync(o => o.MaxTrialAttempts = 2);
        var sweep = await core.SubmitAsync(CoordinatorCore.Grid("dying", trials: 2, maxFailedTrials: 0));
        var trialId = TrialLifecycle.TrialId(sweep.Id, 0);

        for (var attempt = 1; attempt <= 2; attempt++)
        {
            var worker = core.Connect($"w{attempt}");
            await core.PassAsync();
            Assert.Equal(attempt, CoordinatorCore.Assigned(worker).Attempt);
            await core.AdvanceAsync(core.Options.LeaseTimeout + TimeSpan.FromSeconds(1));
            await core.PassAsync();
        }

        var failed = await core.TrialAsync(trialId);
        Assert.Equal(TrialStatus.Failed, failed.State);
        Assert.Equal(2, failed.Attempt);
        Assert.EndsWith("(attempt 2 of 2)", failed.Message, StringComparison.Ordinal);
        var ended = await core.SweepAsync(sweep.Id);
        Assert.Equal(SweepStatus.Failed, ended.State);
        Assert.Equal(1, ended.FailedTrials);
        // A sweep seen finished has no unfinished trial.
        Assert.All(await core.TrialsAsync(sweep.Id), t => Assert.True(t.IsFinished));
        Assert.Equal(TrialStatus.Cancelled, (await core.TrialAsync(TrialLifecycle.TrialId(sweep.Id, 1))).State);
    }

    [Fact]
    public async Task A_transient_failure_requeues_counting_an_attempt_and_a_permanent_one_fails_at_once()
    {
        await using var core = await CoordinatorCore.StartAsync();
        var w1 = core.Connect("w1");
        var sweep = await core.SubmitAsync(CoordinatorCore.Grid("failures", trials: 2, maxFailedTrials: 5));
        await core.PassAsync();
        var first = CoordinatorCore.Assigned(w1);

        await core.OutcomeAsync(w1, first, TrialOutcome.Failed, "out of memory");
        var requeued = await core.TrialAsync(first.TrialId);
        Assert.Equal((TrialStatus.Pending, 1, 1), (requeued.State, requeued.Attempt, requeued.CountedAttempts));
        Assert.Equal("failed on w1: out of memory", requeued.Message);
        Assert.True(w1.IsIdle);
        Assert.IsType<StopOrder>(Assert.Single(CoordinatorCore.Sent(w1)));

        await core.PassAsync();
        var second = CoordinatorCore.Assigned(w1);
        Assert.Equal((first.TrialId, 2), (second.TrialId, second.Attempt));
        await core.OutcomeAsync(w1, second, TrialOutcome.FailedPermanently, "bad data");
        var failed = await core.TrialAsync(first.TrialId);
        Assert.Equal((TrialStatus.Failed, "bad data"), (failed.State, failed.Message));
        Assert.Equal(1, (await core.SweepAsync(sweep.Id)).FailedTrials);
    }

    [Fact]
    public async Task A_drained_trial_is_requeued_at_once_without_counting_an_attempt_and_the_draining_worker_gets_nothing()
    {
        await using var core = await CoordinatorCore.StartAsync(o => o.MaxTrialAttempts = 1);
        var w1 = core.Connect("w1");
        await core.SubmitAsync(CoordinatorCore.Grid("drain", trials: 1));
        await core.PassAsync();
        var first = CoordinatorCore.Assigned(w1);
        await core.Trials.CheckpointStoredAsync(first.TrialId, first.FencingToken, epoch: 1, None);

        w1.Draining = true;
        await core.OutcomeAsync(w1, first, TrialOutcome.Drained, "shutting down");

        var handedBack = await core.TrialAsync(first.TrialId);
        Assert.Equal(TrialStatus.Pending, handedBack.State);
        Assert.Equal((1, 1, 0), (handedBack.Attempt, handedBack.HandedBack, handedBack.CountedAttempts));
        Assert.Equal(1, handedBack.CheckpointEpoch);
        await core.PassAsync();
        Assert.DoesNotContain(CoordinatorCore.Sent(w1), c => c is TrialAssignment);

        // With MaxTrialAttempts 1, a counted attempt would have failed it: the hand-back did not count.
        var w2 = core.Connect("w2");
        await core.PassAsync();
        var second = CoordinatorCore.Assigned(w2);
        Assert.Equal((2, 2L), (second.Attempt, second.FencingToken));
        await core.OutcomeAsync(w2, second, TrialOutcome.Completed);
        Assert.Equal(TrialStatus.Completed, (await core.TrialAsync(first.TrialId)).State);
    }

    [Fact]
    public async Task Cancelling_a_sweep_cancels_pending_trials_and_stops_running_ones()
    {
        await using var core = await CoordinatorCore.StartAsync();
        var w1 = core.Connect("w1");
        var w2 = core.Connect("w2");
        var sweep = await core.SubmitAsync(CoordinatorCore.Grid("cancel", trials: 3, parallelTrials: 2));
        await core.PassAsync();
        var a1 = CoordinatorCore.Assigned(w1);
        var a2 = CoordinatorCore.Assigned(w2);
        using var watch = core.Events.Subscribe(sweep.Id);

        var cancelled = await core.Sweeps.CancelAsync(sweep.Id, None);

        Assert.Equal(SweepStatus.Cancelled, cancelled!.State);
        Assert.All(await core.TrialsAsync(sweep.Id), t => Assert.Equal(TrialStatus.Cancelled, t.State));
        Assert.Equal(a1.TrialId, Assert.IsType<StopOrder>(Assert.Single(CoordinatorCore.Sent(w1))).TrialId);
        Assert.Equal(a2.TrialId, Assert.IsType<StopOrder>(Assert.Single(CoordinatorCore.Sent(w2))).TrialId);
        Assert.True(w1.IsIdle && w2.IsIdle);
        // Watchers hear of every trial, then of the sweep, last.
        var events = new List<SweepUpdate>();
        while (watch.Reader.TryRead(out var e)) events.Add(e);
        Assert.Equal(3, events.OfType<TrialChanged>().Count(e => e.Trial.State == TrialStatus.Cancelled));
        Assert.Equal(SweepStatus.Cancelled, Assert.IsType<SweepChanged>(events[^1]).Sweep.State);

        // Late acknowledgements and passes change nothing.
        await core.OutcomeAsync(w1, a1, TrialOutcome.Stopped);
        await core.PassAsync();
        Assert.Empty(CoordinatorCore.Sent(w1));
        Assert.Null(await core.Sweeps.CancelAsync("sw-none", None));
    }

    [Fact]
    public async Task A_metric_reaching_the_target_completes_the_sweep_and_stops_the_other_trials()
    {
        await using var core = await CoordinatorCore.StartAsync();
        var w1 = core.Connect("w1");
        var w2 = core.Connect("w2");
        var sweep = await core.SubmitAsync(CoordinatorCore.Grid("target", trials: 3, parallelTrials: 2, target: 0.9));
        await core.PassAsync();
        var a1 = CoordinatorCore.Assigned(w1);
        var a2 = CoordinatorCore.Assigned(w2);

        Assert.True(await core.ReportAsync(a1, step: 5, epoch: 1, valAccuracy: 0.5));
        Assert.True(await core.ReportAsync(a2, step: 5, epoch: 1, valAccuracy: 0.95));
        // The trial has ended with its sweep: a re-sent report is refused, and the point is stored once.
        Assert.False(await core.ReportAsync(a2, step: 5, epoch: 1, valAccuracy: 0.95));

        var done = await core.SweepAsync(sweep.Id);
        Assert.Equal((SweepStatus.Completed, a2.TrialId, 0.95), (done.State, done.BestTrialId, done.BestMetric));
        Assert.Contains("target", done.Message, StringComparison.Ordinal);
        Assert.All(await core.TrialsAsync(sweep.Id), t => Assert.Equal(TrialStatus.Cancelled, t.State));
        Assert.Contains(CoordinatorCore.Sent(w1), c => c is StopOrder s && s.TrialId == a1.TrialId);
        Assert.Single(await core.Store.GetMetricsAsync(a2.TrialId, None));
    }

    [Fact]
    public async Task A_compare_and_set_that_loses_a_race_reads_again_and_keeps_the_other_writers_change()
    {
        await using var core = await CoordinatorCore.StartAsync();
        var sweep = await core.SubmitAsync(CoordinatorCore.Grid("race", trials: 1));
        var trialId = TrialLifecycle.TrialId(sweep.Id, 0);
        var updates = new RecordUpdates(core.Store);
        var calls = 0;

        var result = await updates.TrialAsync(trialId, t =>
        {
            // The first time, another writer changes the trial between this read and its write.
            if (calls++ == 0) updates.TrialAsync(trialId, o => o with { Message = "other writer" }, None).GetAwaiter().GetResult();
            return t with { Epoch = 7 };
        }, None);

        Assert.Equal(2, calls);
        var stored = await core.TrialAsync(trialId);
        Assert.Equal((7, "other writer"), (stored.Epoch, stored.Message));
        Assert.Equal(stored.Version, result!.Version);
        // A change that declines writes nothing.
        Assert.Null(await updates.TrialAsync(trialId, _ => null, None));
        Assert.Equal(stored.Version, (await core.TrialAsync(trialId)).Version);
    }
}

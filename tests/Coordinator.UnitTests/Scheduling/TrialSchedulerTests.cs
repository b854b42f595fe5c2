using Orchestrator.Coordinator.Domain;
using Orchestrator.Coordinator.Scheduling;
using Orchestrator.Coordinator.UnitTests.Sweeps;
using Orchestrator.Coordinator.Workers;

namespace Orchestrator.Coordinator.UnitTests.Scheduling;

/// <summary>
/// Scheduling passes on the embedded store and a fake clock: which trials go where, and why the
/// rest wait. Each pass is one call; nothing runs in the background.
/// </summary>
public sealed class TrialSchedulerTests
{
    [Fact]
    public async Task A_data_parallel_trial_starts_only_when_its_whole_gang_fits_and_every_rank_gets_the_same_lease()
    {
        await using var core = await CoordinatorCore.StartAsync();
        var w1 = core.Connect("w1");
        var sweep = await core.SubmitAsync(CoordinatorCore.Grid("gang", trials: 1, workers: 3));
        var trialId = $"{sweep.Id}-t0000";

        // Two of three ranks fit: nothing starts, nothing is held, the trial says why it waits.
        var w2 = core.Connect("w2");
        await core.PassAsync();
        Assert.Empty(CoordinatorCore.Sent(w1));
        Assert.Empty(CoordinatorCore.Sent(w2));
        Assert.Equal(TrialStatus.Pending, (await core.TrialAsync(trialId)).State);
        Assert.Equal(PendingReasonKind.WaitingForWorkers, core.Reasons.Of(await core.TrialAsync(trialId))!.Kind);

        var w3 = core.Connect("w3");
        await core.PassAsync();
        var ranks = new[] { w1, w2, w3 }.Select(CoordinatorCore.Assigned).OrderBy(a => a.Rank).ToList();
        Assert.Equal([0, 1, 2], ranks.Select(r => r.Rank));
        Assert.All(ranks, r => Assert.Equal((trialId, 1L, 3), (r.TrialId, r.FencingToken, r.WorldSize)));
        // Every rank knows every rank's endpoint, in rank order: the lease's workers, one each.
        var running = await core.TrialAsync(trialId);
        Assert.Equal(["w1", "w2", "w3"], running.WorkerIds.Order());
        Assert.All(ranks, r => Assert.Equal(running.WorkerIds.Select(w => $"{w}:9000"), r.PeerEndpoints));
        // The ranks share a fresh 32-byte secret that proves to each other that they belong to this assignment.
        Assert.Equal(32, ranks[0].RingSecret.Length);
        Assert.All(ranks, r => Assert.True(r.RingSecret.Span.SequenceEqual(ranks[0].RingSecret.Span)));
        Assert.Null(core.Reasons.Of(await core.TrialAsync(trialId)));

        // The next assignment of the trial gets another secret: the old ranks cannot join its ring.
        await core.Trials.RequeueAsync(trialId, 1, "test", handedBack: true, CancellationToken.None);
        await core.PassAsync();
        var again = new[] { w1, w2, w3 }.Select(w => Assert.Single(CoordinatorCore.Sent(w).OfType<TrialAssignment>())).ToList();
        Assert.All(again, r => Assert.Equal(2L, r.FencingToken));
        Assert.False(again[0].RingSecret.Span.SequenceEqual(ranks[0].RingSecret.Span));
    }

    [Fact]
    public async Task A_rank_that_ends_frees_only_its_own_GPU_on_a_multi_GPU_worker()
    {
        await using var core = await CoordinatorCore.StartAsync();
        var pair = core.Connect("pair", gpus: 2);
        await core.SubmitAsync(CoordinatorCore.Grid("pair-gang", trials: 1, workers: 2, gpusPerWorker: 1));
        await core.PassAsync();
        var ranks = CoordinatorCore.Sent(pair).Cast<TrialAssignment>().OrderBy(a => a.Rank).ToList();
        Assert.Equal(["cuda:0", "cuda:1"], ranks.Select(r => r.Device));

        // Rank 1 is done; a one-GPU trial fits on the GPU it held, and no other.
        await core.OutcomeAsync(pair, ranks[1], TrialOutcome.RankDone);
        await core.SubmitAsync(CoordinatorCore.Grid("single", trials: 1, gpusPerWorker: 1));
        await core.PassAsync();
        var single = CoordinatorCore.Assigned(pair);
        Assert.Equal([1], single.Gpus);
        Assert.Equal("cuda:1", single.Device);
    }

    [Fact]
    public async Task A_sweep_never_runs_more_than_parallelTrials_and_starts_the_next_trial_in_index_order_when_one_ends()
    {
        await using var core = await CoordinatorCore.StartAsync();
        var workers = new[] { core.Connect("w1"), core.Connect("w2"), core.Connect("w3") };
        var sweep = await core.SubmitAsync(CoordinatorCore.Grid("parallel", trials: 4, parallelTrials: 2));

        await core.PassAsync();
        await core.PassAsync();
        var sent = workers.ToDictionary(w => w, CoordinatorCore.Sent);
        var assigned = sent.Values.SelectMany(c => c).Cast<TrialAssignment>().ToList();
        Assert.Equal([0, 1], assigned.Select(a => int.Parse(a.TrialId[^4..], System.Globalization.CultureInfo.InvariantCulture)).Order());
        var third = $"{sweep.Id}-t0002";
        Assert.Equal(new PendingReason(PendingReasonKind.ParallelLimit, "parallelTrials reached (2 running)"), core.Reasons.Of(await core.TrialAsync(third)));

        var (doneWorker, done) = sent.Where(kv => kv.Value.Count > 0).Select(kv => (kv.Key, (TrialAssignment)kv.Value[0])).First();
        await core.OutcomeAsync(doneWorker, done, TrialOutcome.Completed);
        await core.PassAsync();

        var next = workers.SelectMany(CoordinatorCore.Sent).Cast<TrialAssignment>().Single();
        Assert.Equal(third, next.TrialId);
        Assert.Equal(2, (await core.TrialsAsync(sweep.Id)).Count(t => t.State == TrialStatus.Running));
    }

    [Fact]
    public async Task Leases_are_not_expired_until_one_lease_timeout_after_start_so_workers_can_reattach()
    {
        await using var core = await CoordinatorCore.StartAsync();
        var w1 = core.Connect("w1");
        var sweep = await core.SubmitAsync(CoordinatorCore.Grid("restart", trials: 1));
        var trialId = $"{sweep.Id}-t0000";
        // A lease that had already run out when this coordinator started (a restart after a long outage).
        await core.Trials.AssignAsync(await core.TrialAsync(trialId), [new GangRank(w1, [])], null, CancellationToken.None);
        await core.Store.TryUpdateTrialAsync((await core.TrialAsync(trialId)) with { LeaseExpiresAt = core.Clock.GetUtcNow() - TimeSpan.FromMinutes(1) },
            (await core.TrialAsync(trialId)).Version, CancellationToken.None);

        await core.AdvanceAsync(core.Options.LeaseTimeout / 2);
        await core.PassAsync();
        Assert.Equal(TrialStatus.Running, (await core.TrialAsync(trialId)).State);

        // The worker re-attached in time: its heartbeat renews the lease and it keeps the trial.
        await core.AdvanceAsync(core.Options.LeaseTimeout / 2, w1);
        await core.PassAsync();
        var kept = await core.TrialAsync(trialId);
        Assert.Equal((TrialStatus.Running, 1L), (kept.State, kept.FencingToken));
    }
}

using Orchestrator.Coordinator.Domain;
using Orchestrator.Coordinator.State;
using Orchestrator.TestSupport;

namespace Orchestrator.Coordinator.UnitTests.State;

// The indexed questions (pending by index, expired leases, counts, pages), the batch
// compare-and-set and the metric append that carries its trial update: every store answers them
// the same way, and the indexes follow every write.
public abstract partial class StateStoreContract
{
    private static TrialRecord Running(TrialRecord t, DateTimeOffset lease, long token = 1) =>
        t with { State = TrialStatus.Running, FencingToken = token, WorkerIds = ["w1"], LeaseExpiresAt = lease };

    private static async Task<TrialRecord> UpdateAsync(IStateStore store, string trialId, Func<TrialRecord, TrialRecord> change, CancellationToken ct)
    {
        var current = (await store.GetTrialAsync(trialId, ct).DefaultTimeout())!;
        Assert.True(await store.TryUpdateTrialAsync(change(current), current.Version, ct).DefaultTimeout());
        return (await store.GetTrialAsync(trialId, ct).DefaultTimeout())!;
    }

    [Fact]
    public async Task Pending_trials_are_listed_by_index_up_to_the_limit_and_leave_the_list_when_they_run()
    {
        var store = await NewStoreAsync();
        await store.CreateSweepAsync(Sweep("s1"), Trials("s1", 5), Ct).DefaultTimeout();
        await store.CreateSweepAsync(Sweep("s2"), Trials("s2", 2), Ct).DefaultTimeout();

        Assert.Equal([0, 1, 2], (await store.ListPendingTrialsAsync("s1", 3, Ct).DefaultTimeout()).Select(t => t.Index));
        await UpdateAsync(store, "s1-t0001", t => Running(t, T0.AddSeconds(10)), Ct);
        var pending = await store.ListPendingTrialsAsync("s1", 10, Ct).DefaultTimeout();
        Assert.Equal([0, 2, 3, 4], pending.Select(t => t.Index));
        AssertSame((await store.GetTrialAsync("s1-t0002", Ct).DefaultTimeout())!, pending[1]);
        // Back in the queue (a re-queue), it keeps its place by index.
        await UpdateAsync(store, "s1-t0001", t => t with { State = TrialStatus.Pending, WorkerIds = [], LeaseExpiresAt = null }, Ct);
        Assert.Equal([0, 1, 2, 3, 4], (await store.ListPendingTrialsAsync("s1", 10, Ct).DefaultTimeout()).Select(t => t.Index));
        Assert.Equal(2, (await store.ListPendingTrialsAsync("s2", 10, Ct).DefaultTimeout()).Count);
        Assert.Empty(await store.ListPendingTrialsAsync("s1", 0, Ct).DefaultTimeout());
        Assert.Empty(await store.ListPendingTrialsAsync("nope", 10, Ct).DefaultTimeout());
    }

    [Fact]
    public async Task Expired_leases_are_listed_across_sweeps_earliest_first_and_a_renewed_or_ended_lease_is_not()
    {
        var store = await NewStoreAsync();
        await store.CreateSweepAsync(Sweep("s1"), Trials("s1", 3), Ct).DefaultTimeout();
        await store.CreateSweepAsync(Sweep("s2"), Trials("s2", 1), Ct).DefaultTimeout();
        await UpdateAsync(store, "s1-t0000", t => Running(t, T0.AddSeconds(20)), Ct);
        await UpdateAsync(store, "s1-t0001", t => Running(t, T0.AddSeconds(30)), Ct);
        await UpdateAsync(store, "s2-t0000", t => Running(t, T0.AddSeconds(10)), Ct);

        Assert.Empty(await store.ListExpiredLeasesAsync(T0.AddSeconds(10), 10, Ct).DefaultTimeout()); // strictly before now
        Assert.Equal(["s2-t0000", "s1-t0000"], (await store.ListExpiredLeasesAsync(T0.AddSeconds(25), 10, Ct).DefaultTimeout()).Select(t => t.Id));
        Assert.Equal(["s2-t0000"], (await store.ListExpiredLeasesAsync(T0.AddSeconds(99), 1, Ct).DefaultTimeout()).Select(t => t.Id));

        await UpdateAsync(store, "s2-t0000", t => t with { LeaseExpiresAt = T0.AddSeconds(60) }, Ct); // a heartbeat
        await UpdateAsync(store, "s1-t0000", t => t with { State = TrialStatus.Completed, WorkerIds = [], LeaseExpiresAt = null }, Ct);
        Assert.Equal(["s1-t0001"], (await store.ListExpiredLeasesAsync(T0.AddSeconds(40), 10, Ct).DefaultTimeout()).Select(t => t.Id));
        // A lease on a trial that is not running (a stale field) is no lease.
        await UpdateAsync(store, "s1-t0002", t => t with { LeaseExpiresAt = T0 }, Ct);
        Assert.DoesNotContain("s1-t0002", (await store.ListExpiredLeasesAsync(T0.AddSeconds(99), 10, Ct).DefaultTimeout()).Select(t => t.Id));
    }

    [Fact]
    public async Task Counts_per_state_follow_creation_additions_and_every_update()
    {
        var store = await NewStoreAsync();
        Assert.Equal(default, await store.CountTrialsAsync("nope", Ct).DefaultTimeout());
        await store.CreateSweepAsync(Sweep("s1"), Trials("s1", 4), Ct).DefaultTimeout();
        Assert.Equal(new TrialCounts(4, 0, 0, 0, 0), await store.CountTrialsAsync("s1", Ct).DefaultTimeout());

        await store.AddTrialsAsync("s1", [Trial("s1", 4), Trial("s1", 0)], Ct).DefaultTimeout(); // t0000 exists: skipped
        await UpdateAsync(store, "s1-t0000", t => Running(t, T0.AddSeconds(5)), Ct);
        await UpdateAsync(store, "s1-t0001", t => t with { State = TrialStatus.Cancelled }, Ct);
        await UpdateAsync(store, "s1-t0000", t => t with { Message = "same state" }, Ct);
        var counts = await store.CountTrialsAsync("s1", Ct).DefaultTimeout();
        Assert.Equal(new TrialCounts(3, 1, 0, 0, 1), counts);
        Assert.Equal(5, counts.Total);
        Assert.Equal(4, counts.Unfinished);
    }

    [Fact]
    public async Task Pages_of_trials_follow_the_index_and_can_be_limited_to_one_state()
    {
        var store = await NewStoreAsync();
        await store.CreateSweepAsync(Sweep("s1"), Trials("s1", 25), Ct).DefaultTimeout();
        foreach (var i in new[] { 3, 12, 21 })
            await UpdateAsync(store, $"s1-t{i:0000}", t => t with { State = TrialStatus.Completed }, Ct);

        var seen = new List<int>();
        var after = -1;
        for (var page = 0; page < 10; page++)
        {
            var trials = await store.ListTrialsPageAsync("s1", new TrialPageQuery(after, 10), Ct).DefaultTimeout();
            if (trials.Count == 0) break;
            Assert.True(trials.Count <= 10);
            seen.AddRange(trials.Select(t => t.Index));
            after = trials[^1].Index;
        }
        Assert.Equal(Enumerable.Range(0, 25), seen);
        Assert.Equal([3, 12, 21], (await store.ListTrialsPageAsync("s1", TrialPageQuery.First(10, TrialStatus.Completed), Ct).DefaultTimeout()).Select(t => t.Index));
        Assert.Equal([21], (await store.ListTrialsPageAsync("s1", new TrialPageQuery(12, 10, TrialStatus.Completed), Ct).DefaultTimeout()).Select(t => t.Index));
        Assert.Equal([0, 1], (await store.ListTrialsPageAsync("s1", TrialPageQuery.First(2, TrialStatus.Pending), Ct).DefaultTimeout()).Select(t => t.Index));
    }

    [Fact]
    public async Task A_batch_update_applies_each_change_whose_version_matches_and_keeps_the_indexes()
    {
        var store = await NewStoreAsync();
        await store.CreateSweepAsync(Sweep("s1"), Trials("s1", 4), Ct).DefaultTimeout();
        var moved = await UpdateAsync(store, "s1-t0002", t => t with { Message = "moved on" }, Ct);
        var trials = await store.ListTrialsAsync("s1", Ct).DefaultTimeout();

        // t0002 is offered at its old version (0): refused; the others are cancelled.
        var results = await store.TryUpdateTrialsAsync("s1",
            [.. trials.Select(t => new TrialUpdate(t with { State = TrialStatus.Cancelled, Message = "bulk" }, t.Id == moved.Id ? 0 : t.Version))], Ct).DefaultTimeout();
        Assert.Equal([true, true, false, true], results);
        var after = await store.ListTrialsAsync("s1", Ct).DefaultTimeout();
        Assert.Equal([TrialStatus.Cancelled, TrialStatus.Cancelled, TrialStatus.Pending, TrialStatus.Cancelled], after.Select(t => t.State));
        Assert.Equal("moved on", after[2].Message);
        Assert.Equal(trials[0].Version + 1, after[0].Version);
        Assert.Equal(new TrialCounts(1, 0, 0, 0, 3), await store.CountTrialsAsync("s1", Ct).DefaultTimeout());
        Assert.Equal([2], (await store.ListPendingTrialsAsync("s1", 10, Ct).DefaultTimeout()).Select(t => t.Index));
        Assert.Empty(await store.TryUpdateTrialsAsync("s1", [], Ct).DefaultTimeout());
        await Assert.ThrowsAsync<ArgumentException>(() => store.TryUpdateTrialsAsync("s2", [new TrialUpdate(trials[0], 1)], Ct)).DefaultTimeout();
    }

    [Fact]
    public async Task A_metric_append_with_its_trial_update_stores_both_or_neither()
    {
        var store = await NewStoreAsync();
        await store.CreateSweepAsync(Sweep("s1"), Trials("s1", 1), Ct).DefaultTimeout();
        var trial = await UpdateAsync(store, "s1-t0000", t => Running(t, T0.AddSeconds(10), token: 3), Ct);

        Assert.Equal(MetricAppendResult.Appended, await store.AppendMetricAsync(trial.Id, 3, Point(1), new TrialUpdate(trial with { Epoch = 1, LatestMetric = 0.5 }, trial.Version), Ct).DefaultTimeout());
        var stored = (await store.GetTrialAsync(trial.Id, Ct).DefaultTimeout())!;
        Assert.Equal((1, 0.5, trial.Version + 1), (stored.Epoch, stored.LatestMetric, stored.Version));
        Assert.Single(await store.GetMetricsAsync(trial.Id, Ct).DefaultTimeout());

        // The trial moved on since it was read (a heartbeat): neither the point nor the change.
        Assert.Equal(MetricAppendResult.Conflict, await store.AppendMetricAsync(trial.Id, 3, Point(2), new TrialUpdate(trial with { Epoch = 2 }, trial.Version), Ct).DefaultTimeout());
        AssertSame(stored, await store.GetTrialAsync(trial.Id, Ct).DefaultTimeout());
        Assert.Single(await store.GetMetricsAsync(trial.Id, Ct).DefaultTimeout());
        // A re-sent step is a duplicate even at a stale version; a stale token or unknown trial as before.
        Assert.Equal(MetricAppendResult.Duplicate, await store.AppendMetricAsync(trial.Id, 3, Point(1), new TrialUpdate(stored with { Epoch = 9 }, 0), Ct).DefaultTimeout());
        Assert.Equal(MetricAppendResult.StaleToken, await store.AppendMetricAsync(trial.Id, 2, Point(3), new TrialUpdate(stored, stored.Version), Ct).DefaultTimeout());
        AssertSame(stored, await store.GetTrialAsync(trial.Id, Ct).DefaultTimeout());

        // The update moves the indexes like any other: the trial ends with this report.
        Assert.Equal(MetricAppendResult.Appended, await store.AppendMetricAsync(trial.Id, 3, Point(4), new TrialUpdate(stored with { State = TrialStatus.Completed, LeaseExpiresAt = null }, stored.Version), Ct).DefaultTimeout());
        Assert.Equal(new TrialCounts(0, 0, 1, 0, 0), await store.CountTrialsAsync("s1", Ct).DefaultTimeout());
        Assert.Empty(await store.ListExpiredLeasesAsync(T0.AddDays(1), 10, Ct).DefaultTimeout());
        Assert.Equal([1L, 4L], (await store.GetMetricsAsync(trial.Id, Ct).DefaultTimeout()).Select(p => p.Step));
    }

    [Fact]
    public async Task The_indexes_survive_a_restart_of_the_backing_store()
    {
        var store = await NewStoreAsync();
        await store.CreateSweepAsync(Sweep("s1"), Trials("s1", 3), Ct).DefaultTimeout();
        await UpdateAsync(store, "s1-t0001", t => Running(t, T0.AddSeconds(10)), Ct);

        store = await RestartAsync(store, Ct);
        Track(store);
        Assert.Equal([0, 2], (await store.ListPendingTrialsAsync("s1", 10, Ct).DefaultTimeout()).Select(t => t.Index));
        Assert.Equal(["s1-t0001"], (await store.ListExpiredLeasesAsync(T0.AddMinutes(1), 10, Ct).DefaultTimeout()).Select(t => t.Id));
        Assert.Equal(new TrialCounts(2, 1, 0, 0, 0), await store.CountTrialsAsync("s1", Ct).DefaultTimeout());
    }
}

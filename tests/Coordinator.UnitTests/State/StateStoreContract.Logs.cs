using Orchestrator.Coordinator.Domain;
using Orchestrator.Coordinator.State;
using Orchestrator.TestSupport;

namespace Orchestrator.Coordinator.UnitTests.State;

/// <summary>Trial logs: append under the fencing token, numbering, the bound, reading after a seq.</summary>
public abstract partial class StateStoreContract
{
    private static TrialLogLine[] Lines(params string[] texts) =>
        [.. texts.Select((t, i) => new TrialLogLine { Time = T0.AddMilliseconds(1500.25 * i), Text = t })];

    private async Task<IStateStore> StoreWithTrialsAsync(int trials = 1, long token = 4)
    {
        var store = await NewStoreAsync();
        await store.CreateSweepAsync(Sweep("s1"), [.. Trials("s1", trials).Select(t => t with { FencingToken = token })], Ct).DefaultTimeout();
        return store;
    }

    [Fact]
    public async Task Log_lines_get_consecutive_seqs_across_appends_and_read_back_in_order()
    {
        var store = await StoreWithTrialsAsync();
        var first = Lines("epoch 1/3  loss 2.30", "same text", "same text");
        Assert.Equal(LogAppendResult.Appended, await store.AppendTrialLogAsync("s1-t0000", 4, first, 100, Ct).DefaultTimeout());
        Assert.Equal(LogAppendResult.Appended, await store.AppendTrialLogAsync("s1-t0000", 4, Lines("epoch 2/3", "épоch ✓ 3/3"), 100, Ct).DefaultTimeout());

        var all = await store.GetTrialLogAsync("s1-t0000", 0, 100, Ct).DefaultTimeout();
        Assert.Equal([1L, 2, 3, 4, 5], all.Select(l => l.Seq));
        // Equal lines are both kept; text (any Unicode) and time come back exactly.
        Assert.Equal(["epoch 1/3  loss 2.30", "same text", "same text", "epoch 2/3", "épоch ✓ 3/3"], all.Select(l => l.Text));
        Assert.Equal(first[2].Time, all[2].Time);

        Assert.Equal([4L, 5], (await store.GetTrialLogAsync("s1-t0000", 3, 100, Ct).DefaultTimeout()).Select(l => l.Seq));
        Assert.Equal([2L, 3], (await store.GetTrialLogAsync("s1-t0000", 1, 2, Ct).DefaultTimeout()).Select(l => l.Seq));
        Assert.Empty(await store.GetTrialLogAsync("s1-t0000", 5, 100, Ct).DefaultTimeout());
    }

    [Fact]
    public async Task Only_the_last_lines_of_a_trial_are_kept_and_numbering_goes_on_past_dropped_ones()
    {
        var store = await StoreWithTrialsAsync();
        Assert.Equal(LogAppendResult.Appended, await store.AppendTrialLogAsync("s1-t0000", 4, Lines("a", "b", "c", "d", "e"), 3, Ct).DefaultTimeout());
        var kept = await store.GetTrialLogAsync("s1-t0000", 0, 100, Ct).DefaultTimeout();
        Assert.Equal([(3L, "c"), (4L, "d"), (5L, "e")], kept.Select(l => (l.Seq, l.Text)));

        Assert.Equal(LogAppendResult.Appended, await store.AppendTrialLogAsync("s1-t0000", 4, Lines("f"), 3, Ct).DefaultTimeout());
        kept = await store.GetTrialLogAsync("s1-t0000", 0, 100, Ct).DefaultTimeout();
        Assert.Equal([(4L, "d"), (5L, "e"), (6L, "f")], kept.Select(l => (l.Seq, l.Text)));
    }

    [Fact]
    public async Task Log_lines_under_a_stale_token_or_for_an_unknown_trial_are_refused_and_not_stored()
    {
        var store = await StoreWithTrialsAsync();
        Assert.Equal(LogAppendResult.StaleToken, await store.AppendTrialLogAsync("s1-t0000", 3, Lines("old holder"), 100, Ct).DefaultTimeout());
        Assert.Equal(LogAppendResult.StaleToken, await store.AppendTrialLogAsync("s1-t0000", 5, Lines("future"), 100, Ct).DefaultTimeout());
        Assert.Equal(LogAppendResult.UnknownTrial, await store.AppendTrialLogAsync("s1-t9999", 4, Lines("nobody"), 100, Ct).DefaultTimeout());
        Assert.Empty(await store.GetTrialLogAsync("s1-t0000", 0, 100, Ct).DefaultTimeout());
        Assert.Empty(await store.GetTrialLogAsync("s1-t9999", 0, 100, Ct).DefaultTimeout());

        // The next attempt (a new token) continues the same log.
        Assert.Equal(LogAppendResult.Appended, await store.AppendTrialLogAsync("s1-t0000", 4, Lines("attempt 1"), 100, Ct).DefaultTimeout());
        var trial = (await store.GetTrialAsync("s1-t0000", Ct).DefaultTimeout())!;
        Assert.True(await store.TryUpdateTrialAsync(trial with { FencingToken = 5, Attempt = 2 }, trial.Version, Ct).DefaultTimeout());
        Assert.Equal(LogAppendResult.StaleToken, await store.AppendTrialLogAsync("s1-t0000", 4, Lines("late line of attempt 1"), 100, Ct).DefaultTimeout());
        Assert.Equal(LogAppendResult.Appended, await store.AppendTrialLogAsync("s1-t0000", 5, Lines("attempt 2"), 100, Ct).DefaultTimeout());
        Assert.Equal([(1L, "attempt 1"), (2L, "attempt 2")], (await store.GetTrialLogAsync("s1-t0000", 0, 100, Ct).DefaultTimeout()).Select(l => (l.Seq, l.Text)));
    }

    [Fact]
    public async Task Each_trial_has_its_own_log()
    {
        var store = await StoreWithTrialsAsync(trials: 2);
        await store.AppendTrialLogAsync("s1-t0000", 4, Lines("zero"), 100, Ct).DefaultTimeout();
        await store.AppendTrialLogAsync("s1-t0001", 4, Lines("one", "one again"), 100, Ct).DefaultTimeout();
        Assert.Equal([(1L, "zero")], (await store.GetTrialLogAsync("s1-t0000", 0, 100, Ct).DefaultTimeout()).Select(l => (l.Seq, l.Text)));
        Assert.Equal([(1L, "one"), (2L, "one again")], (await store.GetTrialLogAsync("s1-t0001", 0, 100, Ct).DefaultTimeout()).Select(l => (l.Seq, l.Text)));
    }

    [Fact]
    public async Task Concurrent_appends_each_land_as_one_unbroken_run_of_seqs()
    {
        var store = await StoreWithTrialsAsync();
        await Task.WhenAll(Enumerable.Range(0, 10).Select(w => Task.Run(() =>
            store.AppendTrialLogAsync("s1-t0000", 4, Lines([.. Enumerable.Range(0, 5).Select(i => $"w{w} line {i}")]), 1000, Ct)))).DefaultTimeout();

        var all = await store.GetTrialLogAsync("s1-t0000", 0, 1000, Ct).DefaultTimeout();
        Assert.Equal(Enumerable.Range(1, 50).Select(i => (long)i), all.Select(l => l.Seq));
        // Every append's five lines are consecutive and in their order.
        foreach (var run in all.Chunk(5))
        {
            var writer = run[0].Text[..run[0].Text.IndexOf(' ', StringComparison.Ordinal)];
            Assert.Equal(Enumerable.Range(0, 5).Select(i => $"{writer} line {i}"), run.Select(l => l.Text));
        }
    }

    [Fact]
    public async Task A_trial_log_survives_a_restart_and_numbering_continues()
    {
        var store = await StoreWithTrialsAsync();
        await store.AppendTrialLogAsync("s1-t0000", 4, Lines("before", "restart"), 100, Ct).DefaultTimeout();
        store = await RestartAsync(store, Ct).DefaultTimeout();
        Track(store);
        Assert.Equal(LogAppendResult.Appended, await store.AppendTrialLogAsync("s1-t0000", 4, Lines("after"), 100, Ct).DefaultTimeout());
        Assert.Equal([(1L, "before"), (2L, "restart"), (3L, "after")], (await store.GetTrialLogAsync("s1-t0000", 0, 100, Ct).DefaultTimeout()).Select(l => (l.Seq, l.Text)));
    }
}

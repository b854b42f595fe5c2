using Orchestrator.Coordinator.Domain;
using Orchestrator.Coordinator.Logs;
using Orchestrator.Coordinator.State;
using Orchestrator.Coordinator.State.Sqlite;
using Orchestrator.TestSupport;

namespace Orchestrator.Coordinator.UnitTests.Logs;

public sealed class TrialLogsTests : IAsyncLifetime
{
    private static readonly DateTimeOffset T0 = new(2025, 3, 1, 12, 0, 0, TimeSpan.Zero);
    private readonly CancellationTokenSource _cts = new(TimeSpan.FromMinutes(1));
    private SqliteStateStore _store = null!;
    private TrialLogs _logs = null!;

    public async Task InitializeAsync()
    {
        _store = await SqliteStateStore.OpenInMemoryAsync(_cts.Token);
        _logs = new TrialLogs(_store, TimeProvider.System) { FollowInterval = TimeSpan.FromMilliseconds(20) };
        var sweep = new SweepRecord { Id = "s1", Name = "s1", SpecYaml = "name: s1\n", CreatedAt = T0 };
        await _store.CreateSweepAsync(sweep, [new TrialRecord { Id = "s1-t0000", SweepId = "s1", State = TrialStatus.Running, FencingToken = 2, CreatedAt = T0 }], _cts.Token);
    }

    public async Task DisposeAsync()
    {
        await _store.DisposeAsync();
        _cts.Dispose();
    }

    private static TrialLogLine Line(string text) => new() { Time = T0, Text = text };

    [Fact]
    public void A_line_longer_than_the_limit_is_cut_and_marked()
    {
        var bounded = Assert.Single(TrialLogs.Bound([Line(new string('x', TrialLogs.MaxLineLength + 500))]));
        Assert.Equal(new string('x', TrialLogs.MaxLineLength) + TrialLogs.CutMark, bounded.Text);
        Assert.Equal("short", Assert.Single(TrialLogs.Bound([Line("short")])).Text);
    }

    [Fact]
    public void A_text_with_line_breaks_becomes_one_line_each()
    {
        Assert.Equal(["a", "b", "", "c"], TrialLogs.Bound([Line("a\r\nb\n\nc")]).Select(l => l.Text));
    }

    [Fact]
    public async Task A_trial_that_prints_more_than_the_bound_keeps_its_last_lines()
    {
        var lines = Enumerable.Range(1, TrialLogs.MaxLinesKept + 5).Select(i => Line($"line {i}")).ToList();
        Assert.True(await _logs.AppendAsync("s1-t0000", 2, lines.Take(7), _cts.Token));
        Assert.True(await _logs.AppendAsync("s1-t0000", 2, lines.Skip(7), _cts.Token));

        var read = new List<TrialLogLine>();
        await foreach (var page in _logs.ReadAsync("s1-t0000", 0, follow: false, _cts.Token)) read.AddRange(page);
        Assert.Equal(TrialLogs.MaxLinesKept, read.Count);
        Assert.Equal((6L, "line 6"), (read[0].Seq, read[0].Text));
        Assert.Equal(((long)TrialLogs.MaxLinesKept + 5, $"line {TrialLogs.MaxLinesKept + 5}"), (read[^1].Seq, read[^1].Text));
        // Read page by page, so no message holds the whole log.
        Assert.True(read.Count > TrialLogs.PageSize);
    }

    [Fact]
    public async Task Lines_under_a_stale_token_are_not_stored()
    {
        Assert.False(await _logs.AppendAsync("s1-t0000", 1, [Line("from a worker that lost the trial")], _cts.Token));
        Assert.Empty(await _store.GetTrialLogAsync("s1-t0000", 0, 10, _cts.Token));
    }

    [Fact]
    public async Task Following_gets_new_lines_as_they_come_and_ends_when_the_trial_ends()
    {
        await _logs.AppendAsync("s1-t0000", 2, [Line("epoch 1")], _cts.Token);
        var received = new List<string>();
        var firstSeen = new TaskCompletionSource();
        var follow = Task.Run(async () =>
        {
            await foreach (var page in _logs.ReadAsync("s1-t0000", 0, follow: true, _cts.Token))
            {
                received.AddRange(page.Select(l => l.Text));
                firstSeen.TrySetResult();
            }
        });
        await firstSeen.Task.DefaultTimeout();
        await _logs.AppendAsync("s1-t0000", 2, [Line("epoch 2")], _cts.Token);
        await Task.Delay(100);
        Assert.False(follow.IsCompleted);

        await _logs.AppendAsync("s1-t0000", 2, [Line("completed")], _cts.Token);
        var trial = (await _store.GetTrialAsync("s1-t0000", _cts.Token))!;
        Assert.True(await _store.TryUpdateTrialAsync(trial with { State = TrialStatus.Completed }, trial.Version, _cts.Token));
        await follow.DefaultTimeout();
        Assert.Equal(["epoch 1", "epoch 2", "completed"], received);
    }
}

using Orchestrator.Sweeps;

namespace Orchestrator.Shared.UnitTests.Sweeps;

public class SearcherTests
{
    private static ValidatedSweep Sweep(string extra = "", string method = "random", int maxTrials = 4) => SweepYaml.Parse($"""
        name: s
        parameters:
          optimizer.lr: {"{"} values: [0.01, 0.05, 0.1, 0.2] {"}"}
          model.dropout: {"{"} min: 0.0, max: 0.5 {"}"}
        search: {"{"} method: {method}, maxTrials: {maxTrials}, maxFailedTrials: 1, seed: 3 {"}"}
        {extra}
        """.Replace("model.dropout: { min: 0.0, max: 0.5 }", method == "grid" ? "model.dropout: { values: [0.0] }" : "model.dropout: { min: 0.0, max: 0.5 }", StringComparison.Ordinal));

    /// <summary>A scripted run of events, so a restarted and an uninterrupted searcher can be compared step by step.</summary>
    private static readonly Func<Searcher, IReadOnlyList<SearchAction>>[] Events =
    [
        s => s.OnValidation(0, 1, 0.5),
        s => s.OnValidation(1, 1, 0.6),
        s => s.OnValidation(0, 1, 0.9),      // duplicate epoch: ignored
        s => s.OnTrialExited(1, succeeded: false),
        s => s.OnValidation(0, 2, 0.7),
        s => s.OnTrialExited(0, succeeded: true),
        s => s.OnTrialExited(2, succeeded: true),
        s => s.OnTrialExited(3, succeeded: true),
    ];

    private static List<string> Run(Searcher s, IEnumerable<Func<Searcher, IReadOnlyList<SearchAction>>> events) =>
        [.. events.Select(e => string.Join("; ", e(s).Select(a => a.ToString())))];

    [Fact]
    public void Start_creates_max_trials_once_and_a_second_start_creates_none()
    {
        var searcher = Searcher.Create(Sweep());
        var first = searcher.Start();
        Assert.Equal(4, first.Count);
        Assert.Equal([0, 1, 2, 3], first.Cast<CreateTrial>().Select(t => t.Index));
        Assert.Empty(searcher.Start());
    }

    [Fact]
    public void Start_after_a_restore_of_a_started_searcher_creates_none()
    {
        var searcher = Searcher.Create(Sweep());
        searcher.Start();
        Assert.Empty(Searcher.Restore(Sweep(), searcher.SaveState()).Start());
    }

    [Fact]
    public void A_searcher_saved_before_start_creates_the_same_trials_after_a_restore()
    {
        var a = Searcher.Create(Sweep());
        var restored = Searcher.Restore(Sweep(), a.SaveState());
        Assert.Equal(a.Start(), restored.Start());
    }

    [Theory]
    [InlineData(0)]
    [InlineData(2)]
    [InlineData(4)]
    [InlineData(6)]
    public void A_restored_searcher_continues_with_the_same_actions(int restartAfter)
    {
        var uninterrupted = Searcher.Create(Sweep());
        var expected = Run(uninterrupted, [s => s.Start(), .. Events]);

        var before = Searcher.Create(Sweep());
        var head = Run(before, [s => s.Start(), .. Events.Take(restartAfter)]);
        var after = Searcher.Restore(Sweep(), before.SaveState());
        var tail = Run(after, Events.Skip(restartAfter));

        Assert.Equal(expected, [.. head, .. tail]);
        Assert.Equal(uninterrupted.SaveState(), after.SaveState());
        Assert.Contains("all 4 trials ended, 1 failed; best trial 0 (val_accuracy 0.7)", expected[^1]);
    }

    [Fact]
    public void Repeated_or_stale_reports_and_exits_return_nothing()
    {
        var s = Searcher.Create(Sweep("objective: { target: 0.9 }"));
        s.Start();
        Assert.Empty(s.OnValidation(0, 2, 0.5));
        Assert.Empty(s.OnValidation(0, 1, 0.95));  // older epoch than one already seen
        Assert.Empty(s.OnValidation(9, 1, 0.95));  // no such trial
        Assert.Empty(s.OnTrialExited(1, true));
        Assert.Empty(s.OnTrialExited(1, false));   // second exit
        Assert.Empty(s.OnValidation(1, 3, 0.99));  // after its exit
        Assert.Equal(0.25, s.Progress);
    }

    [Fact]
    public void Reaching_the_target_shuts_the_search_down_once()
    {
        var s = Searcher.Create(Sweep("objective: { target: 0.9 }"));
        s.Start();
        Assert.Empty(s.OnValidation(0, 1, 0.85));
        var actions = s.OnValidation(2, 1, 0.93);
        var shutdown = Assert.IsType<ShutdownSearch>(Assert.Single(actions));
        Assert.False(shutdown.Failed);
        Assert.Equal("target 0.9 reached by trial 2 (val_accuracy 0.93 at epoch 1)", shutdown.Reason);
        Assert.Empty(s.OnValidation(1, 1, 0.99));
        Assert.Empty(s.OnTrialExited(0, true));
        Assert.Equal(1, s.Progress);
    }

    [Fact]
    public void A_minimised_target_is_reached_from_above()
    {
        var s = Searcher.Create(Sweep("objective: { metric: val_loss, target: 0.3 }"));
        s.Start();
        Assert.Empty(s.OnValidation(0, 1, 0.31));
        Assert.IsType<ShutdownSearch>(Assert.Single(s.OnValidation(0, 2, 0.29)));
    }

    [Fact]
    public void More_failures_than_allowed_fail_the_search()
    {
        var s = Searcher.Create(Sweep());   // maxFailedTrials: 1
        s.Start();
        Assert.Empty(s.OnTrialExited(0, false));
        var shutdown = Assert.IsType<ShutdownSearch>(Assert.Single(s.OnTrialExited(1, false)));
        Assert.True(shutdown.Failed);
        Assert.Equal("2 trials failed, more than search.maxFailedTrials (1)", shutdown.Reason);
    }

    [Fact]
    public void A_search_whose_every_trial_failed_within_the_budget_fails_for_want_of_a_result()
    {
        var s = Searcher.Create(Sweep(maxTrials: 1));   // maxFailedTrials: 1 allows the one failure
        s.Start();
        var shutdown = Assert.IsType<ShutdownSearch>(Assert.Single(s.OnTrialExited(0, false)));
        Assert.True(shutdown.Failed);
        Assert.Equal("all 1 trials failed: no result", shutdown.Reason);
    }

    [Fact]
    public void The_search_ends_when_every_trial_has_exited()
    {
        var s = Searcher.Create(Sweep(method: "grid"));
        s.Start();
        for (var i = 0; i < 3; i++)
        {
            Assert.Empty(s.OnTrialExited(i, true));
            Assert.Equal((i + 1) / 4.0, s.Progress);
        }
        var end = Assert.IsType<ShutdownSearch>(Assert.Single(s.OnTrialExited(3, true)));
        Assert.Equal("all 4 trials ended, 0 failed", end.Reason);
        Assert.Equal(1, s.Progress);
    }

    [Fact]
    public void Nan_objectives_are_neither_best_nor_a_reached_target()
    {
        var s = Searcher.Create(Sweep("objective: { goal: minimize, target: 0.1 }"));
        s.Start();
        Assert.Empty(s.OnValidation(0, 1, double.NaN));
        foreach (var i in new[] { 0, 1, 2 }) s.OnTrialExited(i, true);
        var end = Assert.IsType<ShutdownSearch>(Assert.Single(s.OnTrialExited(3, true)));
        Assert.DoesNotContain("best", end.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void A_state_from_another_spec_or_garbage_is_refused()
    {
        var state = Searcher.Create(Sweep()).SaveState();
        Assert.Throws<ArgumentException>(() => Searcher.Restore(Sweep(maxTrials: 5), state));
        Assert.Throws<ArgumentException>(() => Searcher.Restore(Sweep(), "{not json"));
        Assert.Throws<ArgumentException>(() => Searcher.Restore(Sweep(), "{\"version\": 99}"));
    }
}

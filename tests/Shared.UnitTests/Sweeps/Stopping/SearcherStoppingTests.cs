using Orchestrator.Sweeps;

namespace Orchestrator.Shared.UnitTests.Sweeps.Stopping;

/// <summary>
/// The searcher with an early-stopping rule: which trials it stops, how stopped trials end the
/// search, and that a restart anywhere repeats the same actions.
/// </summary>
public class SearcherStoppingTests
{
    private const string Asha = "{ method: asha }";

    /// <summary>
    /// Four trials of 9 epochs. asha with the defaults (min 1, η 3): rungs at epochs 1 and 3
    /// (9 is the last epoch), q = 2/3.
    /// </summary>
    private static ValidatedSweep Sweep(string stopping = Asha, string extra = "", string method = "random", int maxTrials = 4) => SweepYaml.Parse($"""
        name: s
        trial: {"{"} epochs: 9 {"}"}
        parameters:
          optimizer.lr: {"{"} values: [0.01, 0.05, 0.1, 0.2] {"}"}
          model.dropout: {(method == "grid" ? "{ values: [0.0] }" : "{ min: 0.0, max: 0.5 }")}
        search:
          method: {method}
          maxTrials: {maxTrials}
          maxFailedTrials: 1
          seed: 3
          earlyStopping: {stopping}
        {extra}
        """);

    private static Searcher Started(ValidatedSweep sweep)
    {
        var s = Searcher.Create(sweep);
        Assert.Equal(sweep.MaxTrials, s.Start().Count);
        return s;
    }

    private static StopTrial Stopped(int index, int epoch, string value, string metric = "val_accuracy", string rule = "asha") =>
        new(index) { Reason = $"stopped early by {rule} after epoch {epoch} ({metric} {value})" };

    [Fact]
    public void The_rule_stops_trials_which_then_count_as_exited_and_the_search_ends_when_the_rest_complete()
    {
        var s = Started(Sweep());
        Assert.True(s.ReportsChangeState);

        // Rung 1 (epoch 1), recorded scores before each report in brackets:
        Assert.Empty(s.OnValidation(0, 1, 0.5));                                   // [] → first, continue
        Assert.Equal([Stopped(1, 1, "0.4")], s.OnValidation(1, 1, 0.4));           // [0.5] → 0.4 < 0.5
        Assert.Empty(s.OnValidation(2, 1, 0.6));                                   // [0.4, 0.5] → 0.4667 ≤ 0.6
        Assert.Equal([Stopped(3, 1, "0.45")], s.OnValidation(3, 1, 0.45));         // [0.4, 0.5, 0.6] → 0.5333 > 0.45
        Assert.Empty(s.OnValidation(0, 2, 0.55));                                  // epoch 2: no rung
        // Rung 3 (epoch 3):
        Assert.Empty(s.OnValidation(0, 3, 0.6));                                   // [] → first
        var third = Assert.IsType<StopTrial>(Assert.Single(s.OnValidation(2, 3, 0.58)));   // [0.6] → 0.58 < 0.6
        Assert.Equal(2, third.Index);
        Assert.Contains("asha", third.Reason, StringComparison.Ordinal);
        Assert.Contains("epoch 3", third.Reason, StringComparison.Ordinal);

        Assert.Equal(
            [new SearcherTrial(0, 3, false, false), new SearcherTrial(1, 1, true, true), new SearcherTrial(2, 3, true, true), new SearcherTrial(3, 1, true, true)],
            s.Trials());
        Assert.Equal(0.75, s.Progress);                                            // 3 of 4 exited

        // A stopped trial's late report and its exit change nothing.
        Assert.Empty(s.OnValidation(1, 2, 0.99));
        Assert.Empty(s.OnTrialExited(1, succeeded: true));
        Assert.Null(s.Ended);

        // Trial 0, the last one running, completes: the search is over. The best score, 0.6, was
        // first reached by trial 2 at epoch 1 (trial 0's 0.6 at epoch 3 only ties it).
        var end = Assert.IsType<ShutdownSearch>(Assert.Single(s.OnTrialExited(0, succeeded: true)));
        Assert.Equal("all 4 trials ended, 0 failed, 3 stopped early; best trial 2 (val_accuracy 0.6)", end.Reason);
        Assert.False(end.Failed);
        Assert.Same(end, s.Ended);
        Assert.Equal(1, s.Progress);
    }

    [Fact]
    public void Stopping_the_last_running_trial_ends_the_search_in_the_same_actions()
    {
        var s = Started(Sweep());
        Assert.Empty(s.OnValidation(0, 1, 0.5));
        foreach (var i in new[] { 0, 1, 2 }) Assert.Empty(s.OnTrialExited(i, succeeded: true));
        var actions = s.OnValidation(3, 1, 0.25);                                  // [0.5] → stop
        Assert.Equal(2, actions.Count);
        Assert.Equal(Stopped(3, 1, "0.25"), actions[0]);
        Assert.Equal(new ShutdownSearch("all 4 trials ended, 0 failed, 1 stopped early; best trial 0 (val_accuracy 0.5)"), actions[1]);
    }

    [Fact]
    public void A_minimised_objective_stops_the_higher_losses()
    {
        // Same numbers, opposite goals. Maximised: 0.5, 0.6 continue; 0.4 meets [0.5, 0.6] →
        // 0.5667 → stop trial 2. Minimised (scores −0.5, −0.6, −0.4): −0.6 < −0.5 → stop trial 1;
        // −0.4 meets [−0.6, −0.5] → −0.5667 ≤ −0.4 → continue.
        var max = Started(Sweep());
        Assert.Empty(max.OnValidation(0, 1, 0.5));
        Assert.Empty(max.OnValidation(1, 1, 0.6));
        Assert.Equal([Stopped(2, 1, "0.4")], max.OnValidation(2, 1, 0.4));

        var min = Started(Sweep(extra: "objective: { metric: val_loss }"));
        Assert.Empty(min.OnValidation(0, 1, 0.5));
        Assert.Equal([Stopped(1, 1, "0.6", metric: "val_loss")], min.OnValidation(1, 1, 0.6));
        Assert.Empty(min.OnValidation(2, 1, 0.4));

        // goal: minimize on an accuracy is honoured the same way.
        var odd = Started(Sweep(extra: "objective: { metric: val_accuracy, goal: minimize }"));
        Assert.Empty(odd.OnValidation(0, 1, 0.5));
        Assert.Equal([Stopped(1, 1, "0.6")], odd.OnValidation(1, 1, 0.6));
    }

    [Theory]
    [InlineData("")]
    [InlineData("objective: { metric: val_loss }")]
    public void A_nan_objective_is_the_worst_score_whatever_the_goal(string objective)
    {
        var metric = objective.Length == 0 ? "val_accuracy" : "val_loss";
        var s = Started(Sweep(extra: objective));
        Assert.Empty(s.OnValidation(0, 1, 0.5));
        // [0.5] (or [−0.5]): NaN is below both, as the worst score.
        Assert.Equal([Stopped(1, 1, "NaN", metric)], s.OnValidation(1, 1, double.NaN));
    }

    [Fact]
    public void A_nan_first_at_a_rung_continues_and_sets_the_lowest_bar()
    {
        var s = Started(Sweep());
        Assert.Empty(s.OnValidation(0, 1, double.NaN));                           // [] → first
        Assert.Empty(s.OnValidation(1, 1, 0.01));                                 // [worst] → cut-off worst → continue
        // [worst, 0.01] → worst + (0.01 − worst)·0.667 ≈ −3.3e299: a second NaN is below it.
        Assert.Equal([Stopped(2, 1, "NaN")], s.OnValidation(2, 1, double.NaN));
    }

    [Fact]
    public void An_infinite_loss_is_the_worst_score_and_keeps_the_cutoff_defined()
    {
        // val_loss +∞ is −∞ as a score: it ranks as the worst, like NaN. Recorded at rung 1 before
        // trial 3: [W, W, −0.5] (W the worst score) → pos 1.333 → W + (−0.5 − W)·0.333 ≈ −6.7e299,
        // and trial 3's W is below it → stop. (Taken as −∞, the interpolation −∞ + ∞·0.333 is NaN,
        // "below NaN" is never true, and no diverged trial would be stopped any more.)
        var s = Started(Sweep(extra: "objective: { metric: val_loss }"));
        Assert.Empty(s.OnValidation(0, 1, double.PositiveInfinity));             // [] → first
        Assert.Empty(s.OnValidation(1, 1, double.PositiveInfinity));             // [W] → W is not below W
        Assert.Empty(s.OnValidation(2, 1, 0.5));                                 // [W, W] → W ≤ −0.5
        Assert.Equal([Stopped(3, 1, "Infinity", "val_loss")], s.OnValidation(3, 1, double.PositiveInfinity));
    }

    /// <summary>A scripted run with rule stops, a NaN, a duplicate, a failure, a user stop and an extension.</summary>
    private static readonly Func<Searcher, IReadOnlyList<SearchAction>>[] Events =
    [
        s => s.Start(),
        s => s.OnValidation(0, 1, 0.50), s => s.OnValidation(1, 1, 0.40), s => s.OnValidation(2, 1, 0.60),
        s => s.OnValidation(3, 1, 0.45), s => s.OnValidation(4, 1, double.NaN), s => s.OnValidation(5, 1, 0.55),
        s => s.OnValidation(0, 1, 0.90),      // duplicate epoch: ignored
        s => s.OnValidation(0, 2, 0.52), s => s.OnValidation(2, 2, 0.62), s => s.OnValidation(5, 2, 0.50),
        s => s.OnValidation(1, 2, 0.41), s => s.OnValidation(3, 2, 0.30),
        s => s.Stop(5, "stopped by a user"),
        s => s.OnValidation(0, 3, 0.60), s => s.OnValidation(2, 3, 0.58), s => s.OnValidation(1, 3, 0.20),
        s => s.OnValidation(3, 3, 0.65),
        s => s.OnTrialExited(4, succeeded: false),
        s => s.Extend(2),
        s => s.OnValidation(6, 1, 0.70), s => s.OnValidation(7, 1, 0.10), s => s.OnValidation(6, 3, 0.20),
        s => s.OnValidation(7, 4, 0.90), s => s.OnValidation(0, 5, 0.61), s => s.OnValidation(2, 5, 0.59),
        s => s.OnValidation(6, 4, 0.40), s => s.OnValidation(0, 6, 0.30), s => s.OnValidation(2, 6, 0.20),
        s => s.OnTrialExited(0, succeeded: true), s => s.OnTrialExited(1, succeeded: true),
        s => s.OnTrialExited(2, succeeded: true), s => s.OnTrialExited(3, succeeded: true),
        s => s.OnTrialExited(5, succeeded: true), s => s.OnTrialExited(6, succeeded: true),
        s => s.OnTrialExited(7, succeeded: true),
    ];

    private static List<string> Run(Searcher s, IEnumerable<Func<Searcher, IReadOnlyList<SearchAction>>> events) =>
        [.. events.Select(e => string.Join("; ", e(s).Select(a => a.ToString())))];

    public static TheoryData<string, string> Rules => new()
    {
        { Asha, "asha" },
        { "{ method: hyperband, brackets: 2 }", "hyperband" },
        { "{ method: median, minTrials: 2 }", "median" },
    };

    [Theory]
    [MemberData(nameof(Rules))]
    public void Two_searchers_with_the_same_seed_and_reports_act_alike(string stopping, string rule)
    {
        var a = Run(Searcher.Create(Sweep(stopping, maxTrials: 6)), Events);
        var b = Run(Searcher.Create(Sweep(stopping, maxTrials: 6)), Events);
        Assert.Equal(a, b);
        Assert.Contains(a, line => line.Contains($"stopped early by {rule}", StringComparison.Ordinal));
    }

    [Theory]
    [MemberData(nameof(Rules))]
    public void A_searcher_restored_at_any_point_continues_with_the_same_actions(string stopping, string rule)
    {
        var uninterrupted = Searcher.Create(Sweep(stopping, maxTrials: 6));
        var expected = Run(uninterrupted, Events);
        // The script is not trivial for this rule: it stops trials, and it ends the search.
        Assert.Contains(expected, line => line.Contains($"stopped early by {rule}", StringComparison.Ordinal));
        Assert.Contains(expected, line => line.StartsWith("ShutdownSearch", StringComparison.Ordinal));

        for (var k = 0; k <= Events.Length; k++)
        {
            var before = Searcher.Create(Sweep(stopping, maxTrials: 6));
            var head = Run(before, Events.Take(k));
            var after = Searcher.Restore(Sweep(stopping, maxTrials: 6), before.SaveState());
            var tail = Run(after, Events.Skip(k));
            Assert.Equal(expected, head.Concat(tail));
            Assert.Equal(uninterrupted.SaveState(), after.SaveState());
        }
    }

    [Fact]
    public void The_scripted_asha_run_makes_the_hand_computed_stops()
    {
        var actions = Run(Searcher.Create(Sweep(maxTrials: 6)), Events);
        string At(int i) => actions[i];
        // Rung 1: 0.5 first; 0.4 < 0.5 stop; 0.6 continues; 0.45 < 0.5333 stop; NaN stop
        // ([0.4, 0.45, 0.5, 0.6] pos 2 → 0.5); 0.55 meets [W, 0.4, 0.45, 0.5, 0.6] pos 2.667 →
        // 0.45 + (0.5 − 0.45)·0.667 = 0.4833 ≤ 0.55 → continue.
        Assert.Equal("", At(1));
        Assert.StartsWith("StopTrial { Index = 1", At(2), StringComparison.Ordinal);
        Assert.Equal("", At(3));
        Assert.StartsWith("StopTrial { Index = 3", At(4), StringComparison.Ordinal);
        Assert.Equal("StopTrial { Index = 4, Reason = stopped early by asha after epoch 1 (val_accuracy NaN) }", At(5));
        Assert.Equal("", At(6));
        // Trial 5, stopped by the user, is exited and stopped, with the user's reason.
        Assert.Equal("StopTrial { Index = 5, Reason = stopped by a user }", At(13));
        // Rung 3: trial 0 first (0.6); trial 2's 0.58 < 0.6 → stop. Reports of stopped trials 1 and 3: nothing.
        Assert.Equal("", At(14));
        Assert.StartsWith("StopTrial { Index = 2, Reason = stopped early by asha after epoch 3", At(15), StringComparison.Ordinal);
        Assert.Equal("", At(16));
        Assert.Equal("", At(17));
        // Trial 4 was stopped (NaN): its failed exit comes too late to count.
        Assert.Equal("", At(18));
        // Extend(2) creates trials 6 and 7.
        Assert.StartsWith("CreateTrial 6 {", At(19), StringComparison.Ordinal);
        Assert.Contains("CreateTrial 7 {", At(19), StringComparison.Ordinal);
        // Rung 1 again: [W, 0.4, 0.45, 0.5, 0.55, 0.6] pos 3.333 → 0.5 + 0.05·0.333 = 0.5167 ≤ 0.7:
        // trial 6 continues (and is the best so far); then [W, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7] pos 4
        // → 0.55 > 0.1: trial 7 stops. Rung 3: [0.58, 0.6] → 0.58 + 0.02·0.667 = 0.5933 > 0.2: trial 6 stops.
        Assert.Equal("", At(20));
        Assert.StartsWith("StopTrial { Index = 7", At(21), StringComparison.Ordinal);
        Assert.StartsWith("StopTrial { Index = 6, Reason = stopped early by asha after epoch 3", At(22), StringComparison.Ordinal);
        // Trial 0 is the only one left: its completion ends the search, the others' exits are repeats.
        Assert.Equal("ShutdownSearch { Reason = all 8 trials ended, 0 failed, 7 stopped early; best trial 6 (val_accuracy 0.7), Failed = False }", At(29));
        Assert.All(actions.Skip(30), line => Assert.Equal("", line));
    }

    [Fact]
    public void A_user_stop_ends_the_trial_once()
    {
        var s = Started(Sweep());
        Assert.Equal([new StopTrial(2) { Reason = "stopped by alice" }], s.Stop(2, "stopped by alice"));
        Assert.Equal(new SearcherTrial(2, null, true, true), s.Trials()[2]);
        Assert.Empty(s.Stop(2, "again"));
        Assert.Empty(s.Stop(9, "no such trial"));
        Assert.Empty(s.OnValidation(2, 1, 0.9));
        Assert.Empty(s.OnTrialExited(2, succeeded: true));
        Assert.Equal([new StopTrial(0) { Reason = "a" }], s.Stop(0, "a"));
        Assert.Empty(s.OnTrialExited(1, succeeded: true));
        // The last one: stopped and the search ends.
        var actions = s.Stop(3, "b");
        Assert.Equal(2, actions.Count);
        Assert.Equal(new StopTrial(3) { Reason = "b" }, actions[0]);
        Assert.Equal(new ShutdownSearch("all 4 trials ended, 0 failed, 3 stopped early"), actions[1]);
    }

    [Fact]
    public void Extend_on_a_grid_throws_and_leaves_the_search_as_it_was()
    {
        var s = Started(Sweep(method: "grid"));
        Assert.Throws<InvalidOperationException>(() => s.Extend(1));
        foreach (var i in new[] { 0, 1, 2 }) s.OnTrialExited(i, succeeded: true);
        var end = Assert.IsType<ShutdownSearch>(Assert.Single(s.OnTrialExited(3, succeeded: true)));
        Assert.Throws<InvalidOperationException>(() => s.Extend(2));
        Assert.Same(end, s.Ended);
        Assert.Equal(4, s.Trials().Count);
    }

    [Fact]
    public void Extend_reopens_a_completed_random_search_and_its_trials_meet_the_same_rungs()
    {
        var s = Started(Sweep());
        Assert.Empty(s.OnValidation(0, 1, 0.5));
        Assert.Equal([Stopped(1, 1, "0.4")], s.OnValidation(1, 1, 0.4));
        foreach (var i in new[] { 0, 2 }) Assert.Empty(s.OnTrialExited(i, succeeded: true));
        Assert.IsType<ShutdownSearch>(Assert.Single(s.OnTrialExited(3, succeeded: true)));
        Assert.NotNull(s.Ended);

        var created = s.Extend(2);
        Assert.Equal([4, 5], created.Cast<CreateTrial>().Select(t => t.Index));
        Assert.Null(s.Ended);
        Assert.Equal(6, s.Trials().Count);
        // Rung 1 still holds [0.4, 0.5]: cut-off 0.4 + 0.1·0.667 = 0.4667 > 0.45 → trial 4 stops.
        Assert.Equal([Stopped(4, 1, "0.45")], s.OnValidation(4, 1, 0.45));
        var end = Assert.IsType<ShutdownSearch>(Assert.Single(s.OnTrialExited(5, succeeded: true)));
        Assert.Equal("all 6 trials ended, 0 failed, 2 stopped early; best trial 0 (val_accuracy 0.5)", end.Reason);
        Assert.Throws<ArgumentOutOfRangeException>(() => s.Extend(0));
    }

    [Fact]
    public void Extend_after_the_target_was_reached_or_the_search_failed_throws()
    {
        var reached = Started(Sweep(extra: "objective: { target: 0.9 }"));
        Assert.IsType<ShutdownSearch>(Assert.Single(reached.OnValidation(0, 1, 0.95)));
        Assert.Throws<InvalidOperationException>(() => reached.Extend(1));
        // Also after a restart.
        Assert.Throws<InvalidOperationException>(() => Searcher.Restore(Sweep(extra: "objective: { target: 0.9 }"), reached.SaveState()).Extend(1));

        var failed = Started(Sweep());   // maxFailedTrials: 1
        failed.OnTrialExited(0, succeeded: false);
        Assert.True(Assert.IsType<ShutdownSearch>(Assert.Single(failed.OnTrialExited(1, succeeded: false))).Failed);
        Assert.Throws<InvalidOperationException>(() => failed.Extend(1));
    }
}

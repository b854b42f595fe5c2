using Orchestrator.Specs;
using Orchestrator.Sweeps;
using Orchestrator.Sweeps.Stopping;

namespace Orchestrator.Shared.UnitTests.Sweeps.Stopping;

/// <summary>
/// orch extend --epochs in the searcher: the spec with raised epochs, the rule's new rungs, which
/// completed trials train on (hand-computed for ASHA), and that a restart decides the same.
/// </summary>
public class ExtendEpochsTests
{
    /// <summary>Four trials of 9 epochs; asha with the defaults (min 1, η 3): rungs at epochs 1 and 3.</summary>
    private static ValidatedSweep Sweep(string stopping = "{ method: asha }", string epochs = "epochs: 9", string parameters = "") => SweepYaml.Parse($"""
        name: s
        trial: {"{"} {epochs} {"}"}
        parameters:
          optimizer.lr: {"{"} values: [0.01, 0.05, 0.1, 0.2] {"}"}
          {parameters}
        search:
          method: random
          maxTrials: 4
          seed: 3
          {(stopping.Length > 0 ? "earlyStopping: " + stopping : "")}
        objective: {"{"} target: 0.99 {"}"}
        """);

    [Fact]
    public void Raised_epochs_add_the_rungs_that_now_fit_and_leave_the_spec_text_alone()
    {
        var sweep = Sweep();
        Assert.Equal([[1, 3]], sweep.EarlyStopping!.BracketMilestones());
        var extended = sweep.WithEpochs(27);
        Assert.Equal((27, 27, 3), (extended.Epochs, extended.EarlyStopping!.MaxEpochs, extended.EarlyStopping.Rungs));
        Assert.Equal([[1, 3, 9]], extended.EarlyStopping.BracketMilestones());
        Assert.Equal(27, extended.TrialFor(new Dictionary<string, string> { ["optimizer.lr"] = "0.1" }).Epochs);
        Assert.Equal(sweep.SpecYaml, extended.SpecYaml);
        Assert.Equal(9, sweep.Epochs);
        Assert.Same(sweep, sweep.WithEpochs(9));

        // Hyperband: every bracket gains the rung.
        var hyperband = Sweep("{ method: hyperband, brackets: 2 }").WithEpochs(27);
        Assert.Equal([[1, 3, 9], [3, 9]], hyperband.EarlyStopping!.BracketMilestones());
        // The median rule has no rungs.
        Assert.Equal(27, Sweep("{ method: median }").WithEpochs(27).EarlyStopping!.MaxEpochs);
    }

    [Fact]
    public void Fewer_epochs_or_searched_epochs_cannot_be_raised()
    {
        var fewer = Assert.Throws<SpecException>(() => Sweep().WithEpochs(5));
        Assert.Equal("trial.epochs", fewer.Field);
        Assert.Contains("not more than the trials' epochs now (9)", fewer.Problem, StringComparison.Ordinal);

        var searched = Sweep(stopping: "", epochs: "", parameters: "epochs: { values: [2, 4] }");
        var e = Assert.Throws<SpecException>(() => searched.WithEpochs(8));
        Assert.Equal("parameters.epochs", e.Field);
    }

    /// <summary>
    /// Trials 0, 2 and 3 complete at epoch 9 with 0.7, 0.8 and 0.75; trial 1 stopped at rung 1.
    /// Rung 1: [0.5] 0.4 stops; 0.6 goes on; [0.4, 0.5, 0.6] cut-off 0.5333 ≤ 0.55 goes on.
    /// Rung 3: [0.6] 0.65 goes on; [0.6, 0.65] cut-off 0.6333 ≤ 0.66 goes on.
    /// </summary>
    private static Searcher CompletedAsha(ValidatedSweep sweep)
    {
        var s = Searcher.Create(sweep);
        Assert.Equal(4, s.Start().Count);
        Assert.Empty(s.OnValidation(0, 1, 0.5));
        Assert.IsType<StopTrial>(Assert.Single(s.OnValidation(1, 1, 0.4)));
        Assert.Empty(s.OnValidation(2, 1, 0.6));
        Assert.Empty(s.OnValidation(3, 1, 0.55));
        Assert.Empty(s.OnValidation(0, 3, 0.6));
        Assert.Empty(s.OnValidation(2, 3, 0.65));
        Assert.Empty(s.OnValidation(3, 3, 0.66));
        Assert.Empty(s.OnValidation(0, 9, 0.7));
        Assert.Empty(s.OnValidation(2, 9, 0.8));
        Assert.Empty(s.OnValidation(3, 9, 0.75));
        Assert.Empty(s.OnTrialExited(0, succeeded: true));
        Assert.Empty(s.OnTrialExited(2, succeeded: true));
        Assert.IsType<ShutdownSearch>(Assert.Single(s.OnTrialExited(3, succeeded: true)));
        return s;
    }

    [Fact]
    public void Asha_trains_on_the_best_third_of_the_completed_trials_judged_at_the_new_rung()
    {
        var sweep = Sweep();
        var s = CompletedAsha(sweep);
        // The new rung at epoch 9 holds [0.7, 0.75, 0.8]: cut-off at position (2/3)·2 = 1.333,
        // 0.75 + 0.05·0.333 = 0.7667: only trial 2 (0.8) trains on.
        var actions = s.ExtendEpochs(sweep.WithEpochs(27), resumable: [0, 2, 3]);
        Assert.Equal([new ResumeTrial(2)], actions);
        Assert.Null(s.Ended);
        Assert.Equal(27, s.Spec.Epochs);
        Assert.Equal([(0, true), (1, true), (2, false), (3, true)], s.Trials().Select(t => (t.Index, t.Exited)));

        // Trial 2 goes on from epoch 9; the epochs it reported before are not seen again.
        Assert.Empty(s.OnValidation(2, 9, 0.1));
        Assert.Empty(s.OnValidation(2, 10, 0.81));
        var end = Assert.IsType<ShutdownSearch>(Assert.Single(s.OnTrialExited(2, succeeded: true)));
        Assert.Equal("all 4 trials ended, 0 failed, 1 stopped early; best trial 2 (val_accuracy 0.81)", end.Reason);
    }

    [Fact]
    public void Only_trials_with_a_kept_checkpoint_are_judged_and_a_pair_keeps_its_better_half()
    {
        var sweep = Sweep();
        var s = CompletedAsha(sweep);
        // Trial 2's checkpoint was pruned: [0.7, 0.75] → cut-off 0.7 + 0.05·0.667 = 0.7333: trial 3.
        Assert.Equal([new ResumeTrial(3)], s.ExtendEpochs(sweep.WithEpochs(27), resumable: [0, 3]));

        // Nothing to train on after the search ended: refused, and the search stays ended.
        var none = CompletedAsha(sweep);
        var e = Assert.Throws<InvalidOperationException>(() => none.ExtendEpochs(sweep.WithEpochs(27), resumable: []));
        Assert.Contains("no completed trial", e.Message, StringComparison.Ordinal);
        Assert.NotNull(none.Ended);
        Assert.Equal(9, none.Spec.Epochs);
    }

    [Fact]
    public void A_restart_after_the_extension_makes_the_same_decisions()
    {
        var sweep = Sweep();
        var s = CompletedAsha(sweep);
        var extended = sweep.WithEpochs(27);
        s.ExtendEpochs(extended, resumable: [0, 2, 3]);
        var restored = Searcher.Restore(extended, s.SaveState());
        Assert.Equal(s.Trials(), restored.Trials());
        // At the new rung 9 nothing else was recorded; rung 27 is beyond the epochs. Both take the same path.
        foreach (var searcher in new[] { s, restored })
        {
            Assert.Empty(searcher.OnValidation(2, 12, 0.82));
            Assert.IsType<ShutdownSearch>(Assert.Single(searcher.OnTrialExited(2, succeeded: true)));
        }
        Assert.Equal(s.SaveState(), restored.SaveState());
    }

    [Fact]
    public void Without_a_rule_or_with_the_median_rule_every_completed_trial_trains_on_and_a_stopped_one_does_not()
    {
        foreach (var stopping in new[] { "", "{ method: median }" })
        {
            var sweep = Sweep(stopping);
            var s = Searcher.Create(sweep);
            s.Start();
            foreach (var i in new[] { 0, 1, 2 }) s.OnValidation(i, 1, 0.5 + i / 10.0);
            s.Stop(1, "stopped by a user");
            s.OnTrialExited(0, succeeded: true);
            s.OnTrialExited(2, succeeded: true);
            Assert.Equal([new ResumeTrial(0), new ResumeTrial(2)], s.ExtendEpochs(sweep.WithEpochs(12), resumable: [0, 1, 2]));
            // Trial 3 never ran: it just trains the new epochs when it starts.
            Assert.False(s.Trials()[3].Exited);
        }
    }

    [Fact]
    public void A_search_that_reached_its_target_or_failed_cannot_be_extended()
    {
        var sweep = Sweep();
        var reached = Searcher.Create(sweep);
        reached.Start();
        Assert.IsType<ShutdownSearch>(Assert.Single(reached.OnValidation(0, 1, 0.995)));
        Assert.Throws<InvalidOperationException>(() => reached.ExtendEpochs(sweep.WithEpochs(27), resumable: [0]));
        Assert.Equal(9, reached.Spec.Epochs);
    }

    [Fact]
    public void Successive_halving_judges_each_bracket_and_rung_apart_and_skips_rungs_already_recorded()
    {
        // Milestones after raising 10 → 30 epochs: [1, 3, 9, 27]; trials recorded at 9 are past every new rung's epoch.
        var rule = new SuccessiveHalving("asha", [[1, 3, 9, 27]], reductionFactor: 3);
        Assert.False(rule.ShouldStop(0, 9, 0.5));
        Assert.False(rule.ShouldStop(1, 9, 0.6));
        Assert.Equal([0, 1], rule.TrainOn([new FinishedRun(0, 10, 0.5), new FinishedRun(1, 10, 0.6)]));

        // Two brackets, each with its own new rung: trials 0 and 2 in bracket 0, 1 and 3 in bracket 1.
        var brackets = new SuccessiveHalving("hyperband", [[1, 3], [3]], reductionFactor: 2);
        var trainOn = brackets.TrainOn([new FinishedRun(0, 3, 0.9), new FinishedRun(1, 3, 0.2), new FinishedRun(2, 3, 0.1), new FinishedRun(3, 3, 0.3)]);
        Assert.Equal([0, 3], trainOn);
        // Recorded: a later arrival at bracket 0's rung 3 meets [0.1, 0.9] (cut-off 0.5).
        Assert.True(brackets.ShouldStop(4, 3, 0.4));
    }
}

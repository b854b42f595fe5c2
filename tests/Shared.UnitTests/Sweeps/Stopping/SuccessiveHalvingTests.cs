using System.Text.Json;
using Orchestrator.Sweeps.Stopping;

namespace Orchestrator.Shared.UnitTests.Sweeps.Stopping;

/// <summary>
/// ASHA and Hyperband against decisions worked out by hand. Scores are higher-is-better (the
/// searcher negates minimised objectives); η = reductionFactor, q = 1 − 1/η.
/// </summary>
public class SuccessiveHalvingTests
{
    private static EarlyStoppingSettings Settings(string method, int minEpochs, int maxEpochs, int eta, int? brackets = null)
    {
        var rungs = EarlyStoppingSettings.RungsBelow(minEpochs, eta, maxEpochs);
        return new EarlyStoppingSettings
        {
            Method = method, MinEpochs = minEpochs, MaxEpochs = maxEpochs, ReductionFactor = eta, Rungs = rungs,
            Brackets = brackets ?? (method == EarlyStoppingSettings.Hyperband ? rungs : 1),
        };
    }

    private static SuccessiveHalving Asha(int eta, params int[] rungs) => new(EarlyStoppingSettings.Asha, [rungs], eta);

    // ---- Rung milestones ------------------------------------------------------------------

    [Theory]
    // min·η^k strictly below max: 1, 3, 9 (27 is the last epoch: a rung there would stop nothing).
    [InlineData(1, 27, 3, new[] { 1, 3, 9 })]
    // 28 epochs leave room for a rung at 27.
    [InlineData(1, 28, 3, new[] { 1, 3, 9, 27 })]
    // 2, 4, 8, 16 (32 ≥ 20).
    [InlineData(2, 20, 2, new[] { 2, 4, 8, 16 })]
    // 1, 4 (16 is the last epoch).
    [InlineData(1, 16, 4, new[] { 1, 4 })]
    // 5·3 = 15 ≥ 10: one rung only.
    [InlineData(5, 10, 3, new[] { 5 })]
    public void Asha_rungs_are_min_epochs_times_powers_of_eta_below_max_epochs(int min, int max, int eta, int[] expected)
    {
        var settings = Settings(EarlyStoppingSettings.Asha, min, max, eta);
        Assert.Equal(expected.Length, settings.Rungs);
        var milestones = settings.BracketMilestones();
        Assert.Single(milestones);
        Assert.Equal(expected, milestones[0]);
    }

    [Fact]
    public void Hyperband_bracket_b_starts_at_rung_b()
    {
        // min 1, max 27, η 3: rungs 1, 3, 9; three brackets by default.
        Assert.Equal([[1, 3, 9], [3, 9], [9]], Settings(EarlyStoppingSettings.Hyperband, 1, 27, 3).BracketMilestones());
        // A fourth bracket (rungs + 1) has no rung: its trials run every epoch.
        Assert.Equal([[1, 3, 9], [3, 9], [9], []], Settings(EarlyStoppingSettings.Hyperband, 1, 27, 3, brackets: 4).BracketMilestones());
        // min 2, max 20, η 2: rungs 2, 4, 8, 16, four brackets.
        Assert.Equal([[2, 4, 8, 16], [4, 8, 16], [8, 16], [16]], Settings(EarlyStoppingSettings.Hyperband, 2, 20, 2).BracketMilestones());
        // Fewer brackets than rungs: the later starts are simply not used.
        Assert.Equal([[2, 4, 8, 16], [4, 8, 16]], Settings(EarlyStoppingSettings.Hyperband, 2, 20, 2, brackets: 2).BracketMilestones());
    }

    // ---- The cut-off quantile -------------------------------------------------------------

    [Theory]
    // [0.1, 0.2, 0.3, 0.4], q = 2/3: position 2/3·3 = 2 → the third value, 0.3.
    [InlineData(new[] { 0.4, 0.1, 0.3, 0.2 }, 3, 0.3)]
    // [0.1 … 0.5], q = 2/3: position 2/3·4 = 2.667 → 0.3 + (0.4 − 0.3)·0.667 = 0.36667.
    [InlineData(new[] { 0.1, 0.2, 0.3, 0.4, 0.5 }, 3, 0.3 + 0.1 * 2.0 / 3.0)]
    // [0.1, 0.2, 0.3, 0.4], q = 1/2: position 1.5 → 0.2 + 0.1·0.5 = 0.25.
    [InlineData(new[] { 0.4, 0.1, 0.3, 0.2 }, 2, 0.25)]
    // [1 … 6], q = 3/4: position 3/4·5 = 3.75 → 4 + (5 − 4)·0.75 = 4.75.
    [InlineData(new[] { 6.0, 5, 4, 3, 2, 1 }, 4, 4.75)]
    // [0.5, 0.6], q = 2/3: position 0.667 → 0.5 + 0.1·0.667 = 0.56667.
    [InlineData(new[] { 0.6, 0.5 }, 3, 0.5 + 0.1 * 2.0 / 3.0)]
    // One value is its own quantile.
    [InlineData(new[] { 0.7 }, 3, 0.7)]
    public void The_cutoff_interpolates_linearly_between_order_statistics(double[] scores, int eta, double expected)
    {
        var cutoff = SuccessiveHalving.Cutoff(scores, 1 - 1.0 / eta);
        Assert.NotNull(cutoff);
        Assert.Equal(expected, cutoff.Value, 12);
    }

    [Fact]
    public void No_scores_have_no_cutoff() => Assert.Null(SuccessiveHalving.Cutoff([], 0.5));

    [Fact]
    public void A_quantile_that_falls_on_an_order_statistic_is_that_score_exactly()
    {
        // Ten scores 0.1 … 1.0, q = 2/3: position 2/3·9 = 6 exactly → the seventh, 0.7. In floating
        // point (1 − 1/3)·9 is 6.000000000000001; interpolating with that fraction lands one ulp
        // above 0.7, and a trial tied at 0.7 would be "below" its own quantile.
        double[] scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];
        Assert.Equal(0.7, SuccessiveHalving.Cutoff(scores, 1 - 1.0 / 3));

        // The same through the rule: trials 0–9 arrive in ascending order (each the best so far,
        // so each continues); trial 10 ties the quantile (0.7) and is not below it: it continues.
        var asha = Asha(3, 1);
        for (var i = 0; i < 10; i++) Assert.False(asha.ShouldStop(i, 1, scores[i]));
        Assert.False(asha.ShouldStop(10, 1, 0.7));
    }

    // ---- Decisions at the rungs -----------------------------------------------------------

    [Fact]
    public void Early_arrivals_at_a_rung_continue_and_later_ones_below_the_cutoff_stop()
    {
        // min 1, max 27, η 3 → rungs 1, 3, 9; q = 2/3.
        var asha = Asha(3, 1, 3, 9);

        // Rung 1 (epoch 1), "recorded" lists the scores there before the report.
        Assert.False(asha.ShouldStop(0, 1, 0.5));    // recorded []: nothing to compare with → continue
        Assert.False(asha.ShouldStop(1, 1, 0.6));    // [0.5]: cutoff 0.5, 0.6 ≥ 0.5 → continue
        Assert.True(asha.ShouldStop(2, 1, 0.55));    // [0.5, 0.6]: pos 0.667 → 0.5 + 0.1·0.667 = 0.5667 > 0.55 → stop
        Assert.False(asha.ShouldStop(3, 1, 0.58));   // [0.5, 0.55, 0.6]: pos 1.333 → 0.55 + 0.05·0.333 = 0.5667 ≤ 0.58 → continue
        Assert.True(asha.ShouldStop(4, 1, 0.3));     // [0.5, 0.55, 0.58, 0.6]: pos 2 → 0.58 > 0.3 → stop
        Assert.False(asha.ShouldStop(5, 1, 0.58));   // [0.3, 0.5, 0.55, 0.58, 0.6]: pos 2.667 → 0.55 + 0.03·0.667 = 0.57 ≤ 0.58 → continue
        Assert.True(asha.ShouldStop(6, 1, 0.56));    // [0.3, 0.5, 0.55, 0.58, 0.58, 0.6]: pos 3.333 → 0.58 + 0·0.333 = 0.58 > 0.56 → stop

        // Between rungs nothing is decided, however bad the score.
        Assert.False(asha.ShouldStop(0, 2, 0.0));

        // Rung 3 starts empty: the rung-1 scores do not count here.
        Assert.False(asha.ShouldStop(0, 3, 0.52));   // recorded []: continue (though below every rung-1 score)
        Assert.True(asha.ShouldStop(1, 3, 0.51));    // [0.52]: cutoff 0.52 > 0.51 → stop
        Assert.False(asha.ShouldStop(3, 3, 0.9));    // [0.51, 0.52]: 0.51 + 0.01·0.667 = 0.5167 ≤ 0.9 → continue
        Assert.True(asha.ShouldStop(5, 3, 0.6));     // [0.51, 0.52, 0.9]: pos 1.333 → 0.52 + 0.38·0.333 = 0.6467 > 0.6 → stop

        // Rung 9.
        Assert.False(asha.ShouldStop(3, 9, 0.1));    // first at rung 9 → continue
        Assert.True(asha.ShouldStop(0, 9, 0.05));    // [0.1]: 0.1 > 0.05 → stop
    }

    [Fact]
    public void A_trial_is_judged_once_per_rung()
    {
        var asha = Asha(3, 1, 3, 9);
        Assert.False(asha.ShouldStop(0, 1, 0.9));
        Assert.True(asha.ShouldStop(1, 1, 0.1));     // [0.9]: 0.1 < 0.9 → stop
        // Trial 1 reporting at rung 1 again (or after it, before rung 3) is not judged again.
        Assert.False(asha.ShouldStop(1, 1, 0.0));
        Assert.False(asha.ShouldStop(1, 2, 0.0));
        Assert.False(asha.ShouldStop(0, 2, 0.0));
        // Neither repeat changed what rung 1 recorded: trial 2 compares with [0.1, 0.9] (pos 0.667
        // → 0.1 + 0.8·0.667 = 0.6333) and stops. Had a repeat replaced 0.9 or 0.1 with 0.0, the
        // cut-off would be 0.0667 or 0.6 and 0.62 would continue.
        Assert.True(asha.ShouldStop(2, 1, 0.62));
    }

    [Fact]
    public void A_trial_that_skips_rungs_is_judged_at_the_highest_rung_it_reached_only()
    {
        var asha = Asha(3, 1, 3, 9);
        // Trial 0 sets the bar at every rung.
        Assert.False(asha.ShouldStop(0, 1, 0.5));
        Assert.False(asha.ShouldStop(0, 3, 0.6));
        Assert.False(asha.ShouldStop(0, 9, 0.7));
        // Trial 1 passes rung 1, then (resumed) reports epoch 10: past rungs 3 and 9; judged at 9
        // only, against [0.7]: 0.65 < 0.7 → stop.
        Assert.False(asha.ShouldStop(1, 1, 0.9));
        Assert.True(asha.ShouldStop(1, 10, 0.65));
        // Rung 3 did not record trial 1: trial 2 at rung 3 compares with [0.6] only → 0.62 ≥ 0.6 →
        // continue. (Had 0.65 been recorded there too: [0.6, 0.65] → 0.6333 > 0.62 → stop.)
        Assert.False(asha.ShouldStop(2, 3, 0.62));
        // A trial whose first report is past every rung is judged once, at the last rung.
        Assert.True(asha.ShouldStop(3, 12, 0.6));    // rung 9: [0.65, 0.7] → 0.65 + 0.05·0.667 = 0.6833 > 0.6 → stop
        Assert.False(asha.ShouldStop(3, 13, 0.0));   // already judged at rung 9
    }

    [Fact]
    public void The_reduction_factor_sets_how_many_survive()
    {
        // Same reports at one rung; 0.1, 0.2, 0.3, 0.4 arrive in rising order and all continue.
        // The fifth, 0.3, meets recorded [0.1, 0.2, 0.3, 0.4]:
        //   η 2, q 1/2: pos 1.5  → 0.2 + 0.1·0.5  = 0.25  ≤ 0.3 → continue
        //   η 4, q 3/4: pos 2.25 → 0.3 + 0.1·0.25 = 0.325 > 0.3 → stop
        var two = Asha(2, 1);
        var four = Asha(4, 1);
        double[] rising = [0.1, 0.2, 0.3, 0.4];
        for (var i = 0; i < rising.Length; i++)
        {
            Assert.False(two.ShouldStop(i, 1, rising[i]));
            Assert.False(four.ShouldStop(i, 1, rising[i]));
        }
        Assert.False(two.ShouldStop(4, 1, 0.3));
        Assert.True(four.ShouldStop(4, 1, 0.3));
    }

    [Fact]
    public void Hyperband_trials_in_different_brackets_do_not_compete()
    {
        // min 1, max 27, η 3: brackets [1, 3, 9], [3, 9], [9], [] ; trial i in bracket i mod 4.
        var hb = new SuccessiveHalving(EarlyStoppingSettings.Hyperband, [[1, 3, 9], [3, 9], [9], []], 3);
        Assert.Equal("hyperband", hb.Name);

        Assert.False(hb.ShouldStop(0, 1, 0.9));      // bracket 0, rung 1: first → continue
        Assert.False(hb.ShouldStop(1, 1, 0.1));      // bracket 1 has no rung at 1 → continue (bracket 0 would stop it)
        Assert.True(hb.ShouldStop(4, 1, 0.5));       // bracket 0 again: [0.9] → 0.5 < 0.9 → stop
        Assert.False(hb.ShouldStop(0, 3, 0.9));      // bracket 0, rung 3: first
        Assert.False(hb.ShouldStop(1, 3, 0.2));      // bracket 1, rung 3: first — trial 0's 0.9 is in another bracket
        Assert.True(hb.ShouldStop(5, 3, 0.15));      // bracket 1: [0.2] → 0.15 < 0.2 → stop
        Assert.False(hb.ShouldStop(2, 3, 0.0));      // bracket 2 starts at rung 9 → continue
        Assert.False(hb.ShouldStop(2, 9, 0.0));      // bracket 2, rung 9: first
        Assert.True(hb.ShouldStop(6, 9, -0.5));      // bracket 2: [0.0] → stop
        Assert.False(hb.ShouldStop(0, 9, 0.95));     // bracket 0, rung 9: first (bracket 2's scores do not count)
        Assert.False(hb.ShouldStop(3, 9, -1));       // bracket 3 has no rungs: never stopped
        Assert.False(hb.ShouldStop(7, 9, -2));
    }

    // ---- State ----------------------------------------------------------------------------

    /// <summary>
    /// Reports over two brackets (even trials: rungs 1, 3, 9; odd trials: rungs 3, 9), each decision
    /// depending on what was recorded before it; stopped trials report nothing more.
    /// </summary>
    private static readonly (int Trial, int Epoch, double Score, bool Stop)[] Script =
    [
        (0, 1, 0.5, false),    // b0 r1: [] → first
        (1, 3, 0.4, false),    // b1 r3: [] → first
        (2, 1, 0.45, true),    // b0 r1: [0.5] → 0.45 < 0.5
        (3, 3, 0.35, true),    // b1 r3: [0.4] → 0.35 < 0.4
        (4, 1, 0.6, false),    // b0 r1: [0.45, 0.5] pos 0.667 → 0.4833 ≤ 0.6
        (0, 3, 0.55, false),   // b0 r3: [] → first
        (5, 3, 0.45, false),   // b1 r3: [0.35, 0.4] → 0.3833 ≤ 0.45
        (6, 1, 0.52, true),    // b0 r1: [0.45, 0.5, 0.6] pos 1.333 → 0.5 + 0.1·0.333 = 0.5333 > 0.52
        (4, 3, 0.3, true),     // b0 r3: [0.55] → 0.3 < 0.55
        (8, 1, 0.7, false),    // b0 r1: [0.45, 0.5, 0.52, 0.6] pos 2 → 0.52 ≤ 0.7
        (1, 9, 0.5, false),    // b1 r9: [] → first
        (7, 9, 0.2, true),     // b1 r9 (first report past every rung): [0.5] → 0.2 < 0.5
        (8, 3, 0.6, false),    // b0 r3: [0.3, 0.55] pos 0.667 → 0.3 + 0.25·0.667 = 0.4667 ≤ 0.6
        (10, 1, StoppingRules.Worst, true), // b0 r1: [0.45, 0.5, 0.52, 0.6, 0.7] pos 2.667 → 0.5733 > worst
        (0, 9, 0.8, false),    // b0 r9: [] → first
        (8, 10, 0.75, true),   // b0 r9 (epoch 10): [0.8] → 0.75 < 0.8
        (5, 9, 0.1, true),     // b1 r9: [0.2, 0.5] pos 0.667 → 0.2 + 0.3·0.667 = 0.4 > 0.1
        (12, 1, 0.55, false),  // b0 r1: [W, 0.45, 0.5, 0.52, 0.6, 0.7] pos 3.333 → 0.52 + 0.08·0.333 = 0.5467 ≤ 0.55
        (12, 3, 0.55, true),   // b0 r3: [0.3, 0.55, 0.6] pos 1.333 → 0.55 + 0.05·0.333 = 0.5667 > 0.55
        (14, 1, 0.55, false),  // b0 r1: [W, 0.45, 0.5, 0.52, 0.55, 0.6, 0.7] pos 4 → 0.55: a tie is not below → continue
    ];

    private static SuccessiveHalving Hyperband() => new(EarlyStoppingSettings.Hyperband, [[1, 3, 9], [3, 9]], 3);

    [Fact]
    public void The_script_makes_the_hand_computed_decisions()
    {
        var rule = Hyperband();
        Assert.Equal(Script.Select(r => r.Stop), Script.Select(r => rule.ShouldStop(r.Trial, r.Epoch, r.Score)));
    }

    [Fact]
    public void A_restored_rule_decides_like_the_one_it_was_saved_from_at_every_point()
    {
        var expected = Script.Select(r => r.Stop).ToArray();
        for (var k = 0; k <= Script.Length; k++)
        {
            var before = Hyperband();
            var head = Script.Take(k).Select(r => before.ShouldStop(r.Trial, r.Epoch, r.Score)).ToList();
            // Through text, as the searcher's state travels.
            var saved = JsonDocument.Parse(before.Snapshot().GetRawText()).RootElement;
            var after = Hyperband();
            after.Restore(saved);
            Assert.Equal(before.Snapshot().GetRawText(), after.Snapshot().GetRawText());
            var tail = Script.Skip(k).Select(r => after.ShouldStop(r.Trial, r.Epoch, r.Score));
            Assert.Equal(expected, head.Concat(tail));
        }
    }

    [Fact]
    public void Restoring_replaces_the_state_rather_than_adding_to_it()
    {
        var empty = Asha(3, 1).Snapshot();
        var rule = Asha(3, 1);
        Assert.False(rule.ShouldStop(0, 1, 0.9));
        rule.Restore(empty);
        // Trial 0's 0.9 is forgotten: trial 1 is first again → continue; and trial 0 may be judged anew.
        Assert.False(rule.ShouldStop(1, 1, 0.1));
        Assert.True(rule.ShouldStop(0, 1, 0.05));    // [0.1] → stop
    }

    [Fact]
    public void The_settings_build_the_rule_they_name()
    {
        Assert.Null(StoppingRules.For(null));
        Assert.Equal("asha", StoppingRules.For(Settings(EarlyStoppingSettings.Asha, 1, 27, 3))!.Name);
        Assert.Equal("hyperband", StoppingRules.For(Settings(EarlyStoppingSettings.Hyperband, 1, 27, 3))!.Name);
        var median = StoppingRules.For(new EarlyStoppingSettings { Method = EarlyStoppingSettings.Median, MaxEpochs = 5, GraceEpochs = 2, MinTrials = 1 });
        Assert.IsType<MedianStopping>(median);

        // The built ASHA uses the settings' rungs and η: min 1, max 27, η 3 → rungs 1, 3, 9.
        var asha = StoppingRules.For(Settings(EarlyStoppingSettings.Asha, 1, 27, 3))!;
        Assert.False(asha.ShouldStop(0, 1, 0.5));
        Assert.True(asha.ShouldStop(1, 2, 0.1));     // epoch 2: highest rung reached is 1, [0.5] → 0.1 < 0.5 → stop
        Assert.False(asha.ShouldStop(0, 3, 0.5));    // rung 3: first
        Assert.True(asha.ShouldStop(2, 4, 0.4));     // epoch 4 → rung 3: [0.5] → stop
        Assert.False(asha.ShouldStop(3, 9, 0.0));    // rung 9: first (so 9 is a rung, 27 is not)

        // The built Hyperband puts trial 1 in bracket 1 (rungs 3, 9): nothing at epoch 1.
        var hyperband = StoppingRules.For(Settings(EarlyStoppingSettings.Hyperband, 1, 27, 3))!;
        Assert.False(hyperband.ShouldStop(0, 1, 0.5));
        Assert.False(hyperband.ShouldStop(1, 1, 0.1));
        Assert.True(hyperband.ShouldStop(3, 1, 0.1)); // bracket 0 (3 mod 3): [0.5] → stop
    }
}

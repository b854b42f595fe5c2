using System.Text.Json;
using Orchestrator.Sweeps.Stopping;

namespace Orchestrator.Shared.UnitTests.Sweeps.Stopping;

/// <summary>
/// The median rule against hand-computed medians. Scores are multiples of 1/64 so that every
/// running average and median below is exact in binary floating point, and ties are real ties.
/// </summary>
public class MedianStoppingTests
{
    /// <summary>graceEpochs 2, minTrials 2: (trial, epoch, score, stop?), with the arithmetic.</summary>
    private static readonly (int Trial, int Epoch, double Score, bool Stop)[] Script =
    [
        // Trial 0 runs alone: nobody to compare with.
        (0, 1, 0.5, false),
        (0, 2, 0.75, false),
        (0, 3, 0.75, false),
        // Trial 1: epoch 1 is before the grace; at 2 and 3 only trial 0 is there (1 < minTrials 2).
        (1, 1, 0.25, false),
        (1, 2, 0.5, false),
        (1, 3, 0.5, false),
        // Trial 2: epoch 1 in the grace (though worst); at epoch 2 the others' running averages are
        // t0 (0.5 + 0.75)/2 = 0.625, t1 (0.25 + 0.5)/2 = 0.375 → median 0.5; best 0.25 < 0.5 → stop.
        (2, 1, 0.125, false),
        (2, 2, 0.25, true),
        // Trial 3: epoch 2 averages t0 0.625, t1 0.375, t2 (0.125 + 0.25)/2 = 0.1875 → median
        // 0.375. Its current score 0.0625 is far below, but its best (0.875, epoch 1) is above → continue.
        (3, 1, 0.875, false),
        (3, 2, 0.0625, false),
        // Trial 4: epoch 2 averages 0.625, 0.375, 0.1875, t3 (0.875 + 0.0625)/2 = 0.46875 →
        // sorted [0.1875, 0.375, 0.46875, 0.625] → median (0.375 + 0.46875)/2 = 0.421875; best 0.375 < → stop.
        (4, 1, 0.25, false),
        (4, 2, 0.375, true),
        // Trial 5: epoch 2 averages add t4 (0.25 + 0.375)/2 = 0.3125 → sorted [0.1875, 0.3125,
        // 0.375, 0.46875, 0.625] → median 0.375; best 0.375 is not below it (tie) → continue.
        (5, 1, 0.375, false),
        (5, 2, 0.25, false),
        // Trial 6: epoch 2 averages add t5 (0.375 + 0.25)/2 = 0.3125 → [0.1875, 0.3125, 0.3125,
        // 0.375, 0.46875, 0.625] → median (0.3125 + 0.375)/2 = 0.34375; best 0.3125 < → stop.
        (6, 1, 0.3125, false),
        (6, 2, 0.3125, true),
        // Trial 3 at epoch 3: only t0 (avg (0.5 + 0.75 + 0.75)/3) and t1 reached epoch 3 → two
        // others: t0 0.6667, t1 (0.25 + 0.5 + 0.5)/3 = 0.4167 → median 0.5417; best 0.875 → continue.
        (3, 3, 0.125, false),
        // Trial 5 at epoch 3: t0 0.6667, t1 0.4167, t3 (0.875 + 0.0625 + 0.125)/3 = 0.3542 →
        // median 0.4167; best 0.375 < → stop.
        (5, 3, 0.375, true),
    ];

    private static MedianStopping Rule() => new(graceEpochs: 2, minTrials: 2);

    [Fact]
    public void The_script_makes_the_hand_computed_decisions()
    {
        var rule = Rule();
        Assert.Equal("median", rule.Name);
        Assert.Equal(Script.Select(r => r.Stop), Script.Select(r => rule.ShouldStop(r.Trial, r.Epoch, r.Score)));
    }

    [Fact]
    public void Nobody_is_stopped_before_the_grace_epochs()
    {
        var rule = new MedianStopping(graceEpochs: 3, minTrials: 1);
        Assert.False(rule.ShouldStop(0, 1, 1.0));
        Assert.False(rule.ShouldStop(0, 2, 1.0));
        Assert.False(rule.ShouldStop(0, 3, 1.0));
        Assert.False(rule.ShouldStop(1, 1, 0.0));   // epoch 1 < 3
        Assert.False(rule.ShouldStop(1, 2, 0.0));   // epoch 2 < 3
        Assert.True(rule.ShouldStop(1, 3, 0.0));    // epoch 3 = grace: t0's average 1.0 → 0 < 1 → stop
    }

    [Fact]
    public void Nobody_is_stopped_until_min_trials_others_reached_the_epoch()
    {
        var rule = new MedianStopping(graceEpochs: 1, minTrials: 3);
        Assert.False(rule.ShouldStop(0, 1, 0.5));
        Assert.False(rule.ShouldStop(1, 1, 0.5));
        Assert.False(rule.ShouldStop(2, 1, 0.0));   // 2 others < 3
        Assert.True(rule.ShouldStop(3, 1, 0.0));    // t0 0.5, t1 0.5, t2 0 → median 0.5 > 0 → stop
        // Others that have not reached the epoch do not count: at epoch 2 only trial 0 is there.
        Assert.False(rule.ShouldStop(0, 2, 0.5));
        Assert.False(rule.ShouldStop(1, 3, 0.0));   // nobody else reached epoch 3
    }

    [Fact]
    public void The_median_is_of_running_averages_up_to_the_epoch_not_of_last_or_later_scores()
    {
        var rule = new MedianStopping(graceEpochs: 2, minTrials: 1);
        // Trial 0: 1.0, 0.0, then 1.0. Running average at epoch 2 is 0.5 (last score: 0; best: 1;
        // with epoch 3 included: 0.6667).
        Assert.False(rule.ShouldStop(0, 1, 1.0));
        Assert.False(rule.ShouldStop(0, 2, 0.0));
        Assert.False(rule.ShouldStop(0, 3, 1.0));
        // Best 0.5 at epoch 2: not below 0.5 → continue (by the last score, 0, it would too; by 0.6667 it would stop).
        Assert.False(rule.ShouldStop(1, 1, 0.25));
        Assert.False(rule.ShouldStop(1, 2, 0.5));
        // Best 0.375 at epoch 2: below 0.5 → stop (by the last score, 0, it would continue).
        Assert.False(rule.ShouldStop(2, 1, 0.25));
        Assert.True(rule.ShouldStop(2, 2, 0.375));
    }

    [Fact]
    public void An_even_count_takes_the_mean_of_the_middle_two()
    {
        var rule = new MedianStopping(graceEpochs: 1, minTrials: 4);
        foreach (var (trial, score) in new[] { (0, 0.125), (1, 0.25), (2, 0.5), (3, 0.75) })
            Assert.False(rule.ShouldStop(trial, 1, score));
        // Others of trial 4: [0.125, 0.25, 0.5, 0.75] → median (0.25 + 0.5)/2 = 0.375.
        Assert.False(rule.ShouldStop(4, 1, 0.375));    // tie → continue
        // Others of trial 5: [0.125, 0.25, 0.375, 0.5, 0.75] → median 0.375.
        Assert.True(rule.ShouldStop(5, 1, 0.359375));  // 23/64 < 0.375 → stop
    }

    [Fact]
    public void A_restored_rule_decides_like_the_one_it_was_saved_from_at_every_point()
    {
        var expected = Script.Select(r => r.Stop).ToArray();
        for (var k = 0; k <= Script.Length; k++)
        {
            var before = Rule();
            var head = Script.Take(k).Select(r => before.ShouldStop(r.Trial, r.Epoch, r.Score)).ToList();
            var saved = JsonDocument.Parse(before.Snapshot().GetRawText()).RootElement;
            var after = Rule();
            after.Restore(saved);
            Assert.Equal(before.Snapshot().GetRawText(), after.Snapshot().GetRawText());
            var tail = Script.Skip(k).Select(r => after.ShouldStop(r.Trial, r.Epoch, r.Score));
            Assert.Equal(expected, head.Concat(tail));
        }
    }

    [Fact]
    public void Restoring_replaces_the_state()
    {
        var rule = new MedianStopping(graceEpochs: 1, minTrials: 1);
        var empty = rule.Snapshot();
        Assert.False(rule.ShouldStop(0, 1, 1.0));
        rule.Restore(empty);
        Assert.False(rule.ShouldStop(1, 1, 0.0));   // trial 0 forgotten: nobody to compare with
    }
}

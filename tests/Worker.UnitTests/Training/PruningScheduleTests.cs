using Orchestrator.Trials;
using Orchestrator.Worker.Pruning;

namespace Orchestrator.Worker.UnitTests.Training;

public sealed class PruningScheduleTests
{
    [Fact]
    public void The_cubic_schedule_gives_the_hand_computed_sparsity_at_each_update()
    {
        // s(t) = 0.8 + (0 − 0.8)(1 − (t − 100)/400)³
        var s = new PruningSchedule(StartStep: 100, EndStep: 500, Frequency: 100, InitialSparsity: 0, FinalSparsity: 0.8);
        Assert.Equal(0, s.SparsityAt(50));
        Assert.Equal(0, s.SparsityAt(100), 12);
        Assert.Equal(0.4625, s.SparsityAt(200), 12);  // 0.8 − 0.8 · 0.75³
        Assert.Equal(0.7, s.SparsityAt(300), 12);     // 0.8 − 0.8 · 0.5³
        Assert.Equal(0.7875, s.SparsityAt(400), 12);  // 0.8 − 0.8 · 0.25³
        Assert.Equal(0.8, s.SparsityAt(500), 12);
        Assert.Equal(0.8, s.SparsityAt(10_000), 12);  // fine-tuning: the target stays
        Assert.Equal([100L, 200, 300, 400, 500], Enumerable.Range(0, 1000).Select(t => (long)t).Where(s.UpdatesAt));
    }

    [Fact]
    public void The_last_update_falls_on_the_end_step_even_when_the_frequency_does_not_divide_the_span()
    {
        var s = new PruningSchedule(StartStep: 0, EndStep: 10, Frequency: 4, InitialSparsity: 0.2, FinalSparsity: 0.6);
        Assert.Equal([0L, 4, 8, 10], Enumerable.Range(0, 20).Select(t => (long)t).Where(s.UpdatesAt));
        Assert.Equal(0.2, s.SparsityAt(0), 12);
        Assert.Equal(0.5136, s.SparsityAt(4), 12);   // 0.6 − 0.4 · 0.6³
        Assert.Equal(0.5968, s.SparsityAt(8), 12);   // 0.6 − 0.4 · 0.2³
        Assert.Equal(0.6, s.SparsityAt(10), 12);
    }

    [Fact]
    public void Epochs_become_steps_and_the_last_epoch_fine_tunes_by_default()
    {
        var s = PruningSchedule.For(new PruningSpec { Sparsity = 0.9, StartEpoch = 1, Frequency = 7 }, epochs: 5, batchesPerEpoch: 30);
        Assert.Equal(new PruningSchedule(30, 120, 7, 0, 0.9), s);
    }
}

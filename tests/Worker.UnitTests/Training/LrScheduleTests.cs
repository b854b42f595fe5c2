using Orchestrator.Trials;
using Orchestrator.Worker.Training;

namespace Orchestrator.Worker.UnitTests.Training;

public class LrScheduleTests
{
    private static LrSchedule Make(string name, Action<ScheduleSpec>? tweak = null, int epochs = 10)
    {
        var spec = new ScheduleSpec { Name = name };
        tweak?.Invoke(spec);
        return new LrSchedule(spec, peakLr: 0.1, stepsPerEpoch: 100, epochs);
    }

    [Fact]
    public void Cosine_starts_at_the_peak_and_ends_near_the_floor()
    {
        var s = Make("cosine", x => x.MinLrFraction = 0.01);
        Assert.Equal(0.1, s.At(0), 6);
        Assert.Equal(0.1 * 0.505, s.At(500), 3);
        Assert.Equal(0.001, s.At(1000), 6);
        Assert.True(s.At(300) > s.At(301));
    }

    [Fact]
    public void Warmup_rises_linearly_to_the_peak()
    {
        var s = Make("cosine", x => x.WarmupEpochs = 1);
        Assert.Equal(0.001, s.At(0), 6);
        Assert.Equal(0.05, s.At(49), 6);
        Assert.Equal(0.1, s.At(100), 6);
    }

    [Fact]
    public void Step_multiplies_by_gamma_every_step_epochs()
    {
        var s = Make("step", x => { x.StepEpochs = 3; x.Gamma = 0.5; });
        Assert.Equal(0.1, s.At(299), 9);
        Assert.Equal(0.05, s.At(300), 9);
        Assert.Equal(0.025, s.At(650), 9);
    }

    [Fact]
    public void One_cycle_peaks_after_pct_start_and_ends_far_below()
    {
        var s = Make("onecycle", x => x.PctStart = 0.3);
        Assert.Equal(0.1 / 25, s.At(0), 6);
        Assert.Equal(0.1, s.At(300), 6);
        Assert.True(s.At(999) < 0.001);
    }

    [Fact]
    public void Plateau_cuts_the_rate_after_patience_epochs_without_improvement()
    {
        var s = Make("plateau", x => { x.Patience = 1; x.Factor = 0.5; });
        s.OnEpochEnd(1.0);
        s.OnEpochEnd(0.9);
        Assert.Equal(0.1, s.At(250), 9);
        s.OnEpochEnd(0.95); // 1 bad epoch: within patience
        Assert.Equal(0.1, s.At(350), 9);
        s.OnEpochEnd(0.95); // 2 bad epochs: cut
        Assert.Equal(0.05, s.At(450), 9);
        Assert.Equal(0, s.Plateau.BadEpochs);
    }

    [Fact]
    public void Constant_stays_put()
    {
        var s = Make("constant");
        Assert.Equal(0.1, s.At(0));
        Assert.Equal(0.1, s.At(999));
    }
}

using Orchestrator.Worker.Training;

namespace Orchestrator.Worker.UnitTests.Training;

public sealed class LrRangeCurveTests
{
    [Fact]
    public void The_ramp_is_exponential_from_the_start_to_the_end_rate()
    {
        var o = new LrRangeOptions { StartLr = 1e-6, EndLr = 1, Steps = 61 };
        Assert.Equal(1e-6, o.LrAt(0), 12);
        Assert.Equal(1.0, o.LrAt(60), 9);
        Assert.Equal(1e-3, o.LrAt(30), 9);
        Assert.Equal(o.LrAt(11) / o.LrAt(10), o.LrAt(41) / o.LrAt(40), 9);
    }

    /// <summary>A loss that falls until lr = 0.01, then climbs steeply: the shape of a real range test.</summary>
    private static double Loss(double lr) => Math.Log10(lr) is var x && x <= -2 ? 2.3 - 0.4 * Math.Max(0, x + 5) : 1.1 + 3 * Math.Pow(x + 2, 2);

    [Fact]
    public void A_falling_then_exploding_loss_stops_on_divergence_and_suggests_a_tenth_of_the_minimum()
    {
        var curve = new LrRangeCurve(new LrRangeOptions { Steps = 200, Smoothing = 0.5 });
        while (!curve.Done) curve.Add(Loss(curve.NextLr));
        var r = curve.Result();
        Assert.True(r.Diverged);
        Assert.True(r.Points.Count < 200, $"ran all {r.Points.Count} steps");
        Assert.True(r.Points[^1].SmoothedLoss > 4 * r.MinSmoothedLoss);
        Assert.InRange(r.MinLossLr, 0.005, 0.05);
        Assert.Equal(r.MinLossLr / 10, r.SuggestedLr, 12);
        Assert.InRange(r.SteepestLr, 1e-5, r.MinLossLr);
    }

    [Fact]
    public void A_non_finite_loss_ends_the_test_at_once()
    {
        var curve = new LrRangeCurve(new LrRangeOptions { Steps = 50 });
        for (var i = 0; i < 20; i++) curve.Add(2.0 - i * 0.01);
        curve.Add(double.NaN);
        Assert.True(curve.Done);
        Assert.True(curve.Result().MinLossLr < curve.Points[^1].LearningRate);
    }

    [Fact]
    public void The_smoothed_loss_is_bias_corrected_so_it_starts_at_the_first_loss()
    {
        var curve = new LrRangeCurve(new LrRangeOptions());
        Assert.Equal(2.5, curve.Add(2.5).SmoothedLoss, 9);
        Assert.Equal(2.5, curve.Add(2.5).SmoothedLoss, 9);
    }

    [Theory]
    [InlineData(1e-3, 1e-3, 100, "--end-lr")]
    [InlineData(1e-3, 1e-4, 100, "--end-lr")]
    [InlineData(0, 1, 100, "--start-lr")]
    [InlineData(1e-7, 10, 9, "--steps")]
    public void Impossible_settings_are_rejected_naming_the_option(double start, double end, int steps, string option)
    {
        var e = Assert.Throws<ArgumentException>(() => new LrRangeOptions { StartLr = start, EndLr = end, Steps = steps }.Validate());
        Assert.Contains(option, e.Message);
    }
}

/// <summary>
/// The range test on a real session leaves it exactly as it was. The smallest setup that runs the
/// real code path: 64 tiny images, batches of 16, a 12-step test, after one epoch of Adam so that
/// the optimizer has moments and step counts to disturb, and batch norm and dropout so that
/// buffers and the training flag are at stake too.
/// </summary>
[Collection(Support.SerialTorchCollection.Name)]
public sealed class LrRangeTestSessionTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("orch-lrfind-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void The_range_test_leaves_the_weights_buffers_and_optimizer_state_bit_for_bit_as_they_were()
    {
        Orchestrator.Worker.Native.TorchRuntime.Initialize();
        var spec = new Orchestrator.Trials.TrialSpec
        {
            Data = new Orchestrator.Trials.DataSpec { Name = "synthetic" },
            Model = new Orchestrator.Trials.ModelSpec { Name = "simple-cnn", Dropout = 0.2 },
            Epochs = 2,
            BatchSize = 16,
            Seed = 11,
            Optimizer = new Orchestrator.Trials.OptimizerSpec { Name = "adam", Lr = 1e-3 },
        };
        using var session = new TrainingSession(spec, Support.TinyData.Splits(64, 16), TorchSharp.torch.CPU, Path.Combine(_dir, "run"));
        session.Run(untilEpoch: 1);
        session.Model.eval();
        var weightsBefore = Bytes(session.Model);
        var optimizerBefore = OptimizerBytes(session);

        var result = session.FindLearningRate(new LrRangeOptions { StartLr = 1e-5, EndLr = 10, Steps = 12 });

        Assert.True(result.Points.Count >= 2, "the test took no steps");
        Assert.False(session.Model.training, "the model's train/eval mode changed");
        var weightsAfter = Bytes(session.Model);
        Assert.Equal(weightsBefore.Keys, weightsAfter.Keys);
        foreach (var (name, bytes) in weightsBefore) Assert.True(bytes.AsSpan().SequenceEqual(weightsAfter[name]), $"{name} changed");
        // Adam's moments and step counts, as the checkpoint stores them (a few MB: compared as spans, not element by element).
        Assert.True(optimizerBefore.AsSpan().SequenceEqual(OptimizerBytes(session)), "the optimizer state changed");
    }

    /// <summary>Every parameter and buffer as raw bytes (so -0 and 0, or a changed NaN, differ too).</summary>
    private static Dictionary<string, byte[]> Bytes(TorchSharp.torch.nn.Module model) =>
        model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.contiguous().bytes.ToArray());

    private static byte[] OptimizerBytes(TrainingSession session)
    {
        var path = Path.Combine(Path.GetTempPath(), $"orch-lrfind-opt-{Guid.NewGuid():N}.ckpt");
        try
        {
            session.SaveCheckpoint(path);
            return Orchestrator.Worker.Checkpoints.CheckpointFile.Read(path).Sections["optimizer"];
        }
        finally
        {
            File.Delete(path);
        }
    }
}

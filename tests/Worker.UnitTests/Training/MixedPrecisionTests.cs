using Orchestrator.Data;
using Orchestrator.Trials;
using Orchestrator.Worker.Checkpoints;
using Orchestrator.Worker.Native;
using Orchestrator.Worker.Training;
using Orchestrator.Worker.UnitTests.Support;
using TorchSharp;

namespace Orchestrator.Worker.UnitTests.Training;

/// <summary>trial.precision bf16 and fp16 on the CPU, where libtorch runs both: fp32 master weights, exact resume, fp16's loss scaling.</summary>
[Collection(SerialTorchCollection.Name)]
public sealed class MixedPrecisionTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("orch-amp-").FullName;

    public MixedPrecisionTests() => TorchRuntime.Initialize();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static TrialSpec Spec(string precision, int epochs = 2) => new()
    {
        Data = new DataSpec { Name = "synthetic" },
        Model = new ModelSpec { Name = "simple-cnn", Dropout = 0.3 },
        Epochs = epochs,
        BatchSize = 32,
        Seed = 3,
        Precision = precision,
        Optimizer = new OptimizerSpec { Name = "sgd", Lr = 0.05, Momentum = 0.9 },
        Schedule = new ScheduleSpec { Name = "cosine" },
        Augment = new AugmentSpec { CropPadding = 2, Flip = true },
    };

    [Fact]
    public void Bf16_training_on_fashion_mnist_ends_within_half_a_point_of_fp32_over_the_same_epochs()
    {
        var accuracy = new Dictionary<string, double>();
        foreach (var precision in new[] { "fp32", "bf16" })
        {
            var spec = new TrialSpec
            {
                Data = new DataSpec { Name = "fashion-mnist", LimitTrain = 12_000, Download = false },
                Model = new ModelSpec { Name = "simple-cnn" },
                Epochs = 2,
                BatchSize = 128,
                Seed = 1,
                Precision = precision,
                Optimizer = new OptimizerSpec { Name = "sgd", Lr = 0.05, Momentum = 0.9, Nesterov = true },
                Schedule = new ScheduleSpec { Name = "cosine" },
            };
            var data = DatasetLoader.Load(spec.Data, spec.Seed, null, CancellationToken.None);
            using var session = new TrainingSession(spec, data, torch.CPU, Path.Combine(_dir, "fashion-" + precision));
            var result = session.Run();
            Assert.True(result.Last.TrainLoss < session.History[0].TrainLoss, $"{precision}: training loss did not fall");
            accuracy[precision] = result.Last.ValAccuracy;
        }
        // Both learn (a 2-conv net reaches about 0.85 here), and reduced precision costs under half a point.
        Assert.True(accuracy["fp32"] > 0.8, $"fp32 validation accuracy {accuracy["fp32"]}");
        Assert.True(Math.Abs(accuracy["bf16"] - accuracy["fp32"]) <= 0.005,
            $"bf16 {accuracy["bf16"]:F4} against fp32 {accuracy["fp32"]:F4} on the 10,000 test images");
    }

    [Theory]
    [InlineData("bf16")]
    [InlineData("fp16")]
    public void Two_epochs_straight_equal_one_epoch_then_resume_and_checkpoints_hold_fp32_weights(string precision)
    {
        var spec = Spec(precision);
        var data = TinyData.Splits(192, 64);
        using var straight = new TrainingSession(spec, data, torch.CPU, Path.Combine(_dir, precision + "-straight"));
        straight.Run();
        using (var first = new TrainingSession(spec, data, torch.CPU, Path.Combine(_dir, precision + "-split")))
            first.Run(untilEpoch: 1);
        var checkpoint = Path.Combine(_dir, precision + "-split", "last.ckpt");
        var (saved, _, _) = TrainingSession.LoadModel(checkpoint, torch.CPU);
        using (saved)
            Assert.All(saved.state_dict().Values.Where(t => t.is_floating_point()), t => Assert.Equal(torch.ScalarType.Float32, t.dtype));
        Assert.Equal(precision == "fp16", CheckpointFile.Read(checkpoint).Sections.ContainsKey(CheckpointFile.LossScaleSection));

        using var resumed = TrainingSession.Resume(checkpoint, data, torch.CPU, Path.Combine(_dir, precision + "-split"));
        resumed.Run();
        foreach (var (name, tensor) in straight.Model.state_dict())
        {
            using var diff = (tensor.to_type(torch.ScalarType.Float64) - resumed.Model.state_dict()[name].to_type(torch.ScalarType.Float64)).abs().max();
            Assert.True(diff.ToDouble() <= 1e-6, $"{precision}: {name} differs by {diff.ToDouble()}");
        }
        Assert.Equal(straight.History[1].ValAccuracy, resumed.History[1].ValAccuracy);
        Assert.Equal(straight.History[1].LossScale, resumed.History[1].LossScale);
    }

    [Fact]
    public void Fp16_skips_the_steps_whose_gradients_overflow_lowers_the_scale_counts_them_and_still_learns()
    {
        using var session = new TrainingSession(Spec("fp16", epochs: 3), TinyData.Splits(256, 128), torch.CPU, Path.Combine(_dir, "fp16"));
        var result = session.Run();
        // 2^16 times a loss of about 1.4 overflows fp16's largest value (65504) in the first steps.
        Assert.True(session.History[0].SkippedSteps >= 1, $"skipped steps {session.History[0].SkippedSteps}");
        Assert.True(session.History[0].LossScale < LossScaler.InitialScale, $"loss scale {session.History[0].LossScale}");
        Assert.All(session.Model.parameters(), p => Assert.True(p.isfinite().all().item<bool>(), "a master weight is not finite"));
        Assert.True(result.Last.ValAccuracy > 0.9, $"validation accuracy {result.Last.ValAccuracy} (chance is 0.25)");
        // bf16 and fp32 report neither.
        using var bf16 = new TrainingSession(Spec("bf16", epochs: 1), TinyData.Splits(64, 32), torch.CPU, Path.Combine(_dir, "bf16"));
        Assert.True(double.IsNaN(bf16.Run().Last.SkippedSteps));
    }

    [Fact]
    public void Live_tensor_count_does_not_grow_across_mixed_precision_steps()
    {
        var spec = Spec("fp16", epochs: 4);
        spec.Optimizer = new OptimizerSpec { Name = "adam", Lr = 0.001 };
        using var session = new TrainingSession(spec, TinyData.Splits(128, 64), torch.CPU, Path.Combine(_dir, "leak"));
        session.Run(untilEpoch: 1);
        var afterOne = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        session.Run(untilEpoch: 4);
        var afterFour = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        Assert.True(afterFour - afterOne <= 0, $"live tensors grew from {afterOne} to {afterFour} over 12 steps");
    }

    [Fact]
    public void The_loss_scaler_halves_on_overflow_doubles_after_2000_good_steps_and_round_trips()
    {
        var scaler = new LossScaler();
        scaler.Update(finite: false);
        Assert.Equal(LossScaler.InitialScale / 2, scaler.Scale);
        Assert.Equal(1, scaler.Skipped);
        for (var i = 0; i < LossScaler.GrowthInterval - 1; i++) scaler.Update(finite: true);
        Assert.Equal(LossScaler.InitialScale / 2, scaler.Scale);
        scaler.Update(finite: true);
        Assert.Equal(LossScaler.InitialScale, scaler.Scale);
        scaler.Update(finite: true);

        var copy = new LossScaler();
        copy.Load(scaler.Save());
        Assert.Equal((scaler.Scale, scaler.GoodSteps, scaler.Skipped), (copy.Scale, copy.GoodSteps, copy.Skipped));
        Assert.Throws<InvalidDataException>(() => copy.Load([1, 2, 3]));
        var negative = scaler.Save();
        BitConverter.GetBytes(-1.0).CopyTo(negative, 0);
        Assert.Throws<InvalidDataException>(() => copy.Load(negative));
    }
}

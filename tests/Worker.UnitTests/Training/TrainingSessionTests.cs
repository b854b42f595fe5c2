using Orchestrator.Trials;
using Orchestrator.Worker.Native;
using Orchestrator.Worker.Training;
using Orchestrator.Worker.UnitTests.Support;
using TorchSharp;

namespace Orchestrator.Worker.UnitTests.Training;

[Collection(SerialTorchCollection.Name)]
public sealed class TrainingSessionTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("orch-train-").FullName;

    public TrainingSessionTests() => TorchRuntime.Initialize();

    private static TrialSpec Spec(int epochs = 3) => new()
    {
        Data = new DataSpec { Name = "synthetic" },
        Model = new ModelSpec { Name = "simple-cnn" },
        Epochs = epochs,
        BatchSize = 32,
        Seed = 3,
        Optimizer = new OptimizerSpec { Name = "sgd", Lr = 0.05 },
        Schedule = new ScheduleSpec { Name = "cosine" },
    };

    [Fact]
    public void A_small_run_learns_far_above_chance_and_saves_checkpoints()
    {
        var data = TinyData.Splits(256, 128);
        using var session = new TrainingSession(Spec(), data, torch.CPU, Path.Combine(_dir, "run"));
        var result = session.Run();
        Assert.Equal(3, result.Epochs);
        Assert.True(result.Last.ValAccuracy > 0.9, $"validation accuracy {result.Last.ValAccuracy} (chance is 0.25)");
        Assert.True(result.Last.TrainLoss < session.History[0].TrainLoss, "training loss did not fall");
        Assert.True(File.Exists(result.BestCheckpoint));
        Assert.True(File.Exists(result.LastCheckpoint));
        Assert.Equal(3, File.ReadAllLines(Path.Combine(result.RunDir, "metrics.jsonl")).Length);
    }

    [Theory]
    [InlineData("val_loss", "minimize")]
    [InlineData("val_loss", "maximize")]
    [InlineData("train_accuracy", null)]
    public void The_best_epoch_and_best_checkpoint_follow_the_chosen_metric_and_goal(string metric, string? goal)
    {
        var spec = Spec(epochs: 3);
        spec.Checkpoint.BestMetric = metric;
        spec.Checkpoint.BestGoal = goal;
        using var session = new TrainingSession(spec, TinyData.Splits(256, 128), torch.CPU, Path.Combine(_dir, $"best-{metric}-{goal}"));
        var result = session.Run();

        var values = session.History.Select(h => h.Value(metric)).ToList();
        var expected = 1 + (spec.Checkpoint.MaximizesBest() ? values.IndexOf(values.Max()) : values.IndexOf(values.Min()));
        Assert.Equal(expected, result.BestEpoch);
        // The stored best checkpoint is that epoch's weights.
        Assert.Equal(expected, Orchestrator.Worker.Checkpoints.CheckpointFile.ReadHeader(result.BestCheckpoint!).EpochsCompleted);
    }

    [Fact]
    public void Patience_ends_the_run_once_the_best_metric_stops_improving_and_the_last_checkpoint_is_that_epoch()
    {
        // Judged by the highest validation loss, which a learning run lowers epoch after epoch:
        // nothing improves after the first epoch, so patience 1 stops after the second.
        var spec = Spec(epochs: 5);
        spec.Checkpoint.BestMetric = "val_loss";
        spec.Checkpoint.BestGoal = "maximize";
        spec.EarlyStopping = new EarlyStoppingSpec { Patience = 1 };
        using var session = new TrainingSession(spec, TinyData.Splits(256, 128), torch.CPU, Path.Combine(_dir, "patience"));
        var result = session.Run();

        Assert.True(session.History[1].ValLoss <= session.History[0].ValLoss, "the premise: validation loss fell");
        Assert.Equal(2, result.Epochs);
        Assert.Equal(1, result.BestEpoch);
        Assert.Equal(2, Orchestrator.Worker.Checkpoints.CheckpointFile.ReadHeader(result.LastCheckpoint!).EpochsCompleted);
    }

    [Theory]
    [InlineData("adam", 0.003, "constant", "cross-entropy")]
    [InlineData("adamw", 0.003, "onecycle", "focal")]
    [InlineData("rmsprop", 0.001, "step", "cross-entropy")]
    [InlineData("sgd", 0.05, "plateau", "focal")]
    public void Every_optimizer_schedule_and_loss_trains(string optimizer, double lr, string schedule, string loss)
    {
        var spec = Spec(epochs: 2);
        spec.Optimizer = new OptimizerSpec { Name = optimizer, Lr = lr, Momentum = optimizer == "rmsprop" ? 0 : 0.9 };
        spec.Schedule = new ScheduleSpec { Name = schedule, StepEpochs = 1 };
        spec.Loss = new LossSpec { Name = loss, ClassWeights = ["balanced"] };
        spec.GradClip = 5;
        using var session = new TrainingSession(spec, TinyData.Splits(256, 128), torch.CPU, Path.Combine(_dir, optimizer));
        var result = session.Run();
        Assert.True(result.Last.ValAccuracy > 0.6, $"{optimizer}/{schedule}/{loss}: validation accuracy {result.Last.ValAccuracy}");
    }

    [Fact]
    public void A_drain_during_an_epoch_finishes_that_epoch_and_its_checkpoint_then_stops_and_the_run_resumes_after_it()
    {
        var spec = Spec(epochs: 4);
        var data = TinyData.Splits(128, 64);
        using var drain = new CancellationTokenSource();
        // Asked while epoch 2 is under way (its first batch is being prepared).
        var observer = new DrainAt(epoch: 2, drain);
        bool drained;
        using (var first = new TrainingSession(spec, data, torch.CPU, Path.Combine(_dir, "drained"), observer))
        {
            drained = first.RunUntilDrained(drain.Token);
            Assert.Equal(2, first.EpochsCompleted);
        }
        Assert.True(drained, "the run did not report that it stopped early");
        // Epoch 2 ended as any epoch does: its metrics and its checkpoint, and nothing of epoch 3.
        Assert.Equal([1, 2], observer.Ended);
        Assert.Equal(["last 1", "last 2"], observer.Checkpoints.Where(c => c.StartsWith("last", StringComparison.Ordinal)));
        Assert.Equal(2, File.ReadAllLines(Path.Combine(_dir, "drained", "metrics.jsonl")).Length);
        var checkpoint = Path.Combine(_dir, "drained", "last.ckpt");
        Assert.Equal(2, Orchestrator.Worker.Checkpoints.CheckpointFile.ReadHeader(checkpoint).EpochsCompleted);

        // Resumed elsewhere from that checkpoint, the rest of the run trains epochs 3 and 4 only.
        var resumedObserver = new DrainAt(epoch: int.MaxValue, drain: null);
        using var resumed = TrainingSession.Resume(checkpoint, data, torch.CPU, Path.Combine(_dir, "resumed"), resumedObserver);
        Assert.False(resumed.RunUntilDrained(CancellationToken.None), "a run nobody drains stopped early");
        Assert.Equal([3, 4], resumedObserver.Ended);
        Assert.Equal(4, resumed.EpochsCompleted);
        Assert.Equal([1, 2, 3, 4], resumed.History.Select(m => m.Epoch));
    }

    [Fact]
    public void A_drain_before_the_first_epoch_stops_without_training()
    {
        using var drain = new CancellationTokenSource();
        drain.Cancel();
        var observer = new DrainAt(epoch: int.MaxValue, drain: null);
        using var session = new TrainingSession(Spec(epochs: 2), TinyData.Splits(64, 32), torch.CPU, Path.Combine(_dir, "early"), observer);
        Assert.True(session.RunUntilDrained(drain.Token));
        Assert.Equal(0, session.EpochsCompleted);
        Assert.Empty(observer.Ended);
        Assert.False(File.Exists(session.LastCheckpointPath));
    }

    /// <summary>
    /// Stores checkpoints as the coordinator does (copies of what it is given), checks that the best
    /// epoch of every last checkpoint was stored before it, and fails like a killed worker when the
    /// last checkpoint of one epoch arrives.
    /// </summary>
    private sealed class StoringObserver(string store, int dieAtEpoch) : ITrainingObserver
    {
        public HashSet<int> BestStored { get; } = [];
        public string Last => Path.Combine(store, "latest.ckpt");
        public string Best => Path.Combine(store, "best.ckpt");

        public void OnCheckpoint(string path, CheckpointKind kind)
        {
            var header = Orchestrator.Worker.Checkpoints.CheckpointFile.ReadHeader(path);
            if (kind == CheckpointKind.Best)
            {
                File.Copy(path, Best, overwrite: true);
                BestStored.Add(header.EpochsCompleted);
                return;
            }
            Assert.True(BestStored.Contains(header.BestEpoch),
                $"the last checkpoint of epoch {header.EpochsCompleted} arrived before the best one of epoch {header.BestEpoch}");
            if (header.EpochsCompleted == dieAtEpoch) throw new IOException("killed");
            File.Copy(path, Last, overwrite: true);
        }
    }

    [Fact]
    public void A_run_killed_between_checkpoints_still_ends_with_a_best_checkpoint_of_its_best_epoch()
    {
        var data = TinyData.Splits(192, 64);
        var store = Directory.CreateDirectory(Path.Combine(_dir, "store")).FullName;
        var observer = new StoringObserver(store, dieAtEpoch: 2);
        using (var first = new TrainingSession(Spec(epochs: 3), data, torch.CPU, Path.Combine(_dir, "killed"), observer))
            Assert.Throws<IOException>(() => first.Run());
        Assert.Equal(1, Orchestrator.Worker.Checkpoints.CheckpointFile.ReadHeader(observer.Last).EpochsCompleted);

        // Resumed elsewhere from the stored last checkpoint, storing into the same place.
        var resumedObserver = new StoringObserver(store, dieAtEpoch: -1);
        foreach (var e in observer.BestStored) resumedObserver.BestStored.Add(e);
        using var resumed = TrainingSession.Resume(observer.Last, data, torch.CPU, Path.Combine(_dir, "resumed"), resumedObserver);
        var result = resumed.Run();
        var best = Orchestrator.Worker.Checkpoints.CheckpointFile.ReadHeader(observer.Best);
        Assert.Equal(result.BestEpoch, best.EpochsCompleted);
        Assert.Equal(result.BestValAccuracy, best.History[^1].ValAccuracy);
    }

    /// <summary>Records epoch ends and checkpoints, and requests a drain when a given epoch starts.</summary>
    private sealed class DrainAt(int epoch, CancellationTokenSource? drain) : ITrainingObserver
    {
        public List<int> Ended { get; } = [];
        public List<string> Checkpoints { get; } = [];

        public void OnEpochStart(int e, int epochs, int batches)
        {
            if (e == epoch) drain?.Cancel();
        }

        public void OnEpochEnd(EpochMetrics metrics) => Ended.Add(metrics.Epoch);

        public void OnCheckpoint(string path, CheckpointKind kind) =>
            Checkpoints.Add($"{kind.ToString().ToLowerInvariant()} {Orchestrator.Worker.Checkpoints.CheckpointFile.ReadHeader(path).EpochsCompleted}");
    }

    [Fact]
    public void Two_epochs_straight_equal_one_epoch_then_resume()
    {
        var spec = Spec(epochs: 2);
        spec.Model.Dropout = 0.3;                                  // exercises the saved RNG state
        spec.Augment = new AugmentSpec { CropPadding = 2, Flip = true, Brightness = 0.2 };
        spec.Optimizer = new OptimizerSpec { Name = "sgd", Lr = 0.05, Momentum = 0.9 }; // momentum buffers are optimizer state
        var data = TinyData.Splits(192, 64);

        using var straight = new TrainingSession(spec, data, torch.CPU, Path.Combine(_dir, "straight"));
        straight.Run();

        using (var first = new TrainingSession(spec, data, torch.CPU, Path.Combine(_dir, "split")))
            first.Run(untilEpoch: 1);
        using var resumed = TrainingSession.Resume(Path.Combine(_dir, "split", "last.ckpt"), data, torch.CPU, Path.Combine(_dir, "split"));
        Assert.Equal(1, resumed.EpochsCompleted);
        resumed.Run();

        var a = straight.Model.state_dict();
        var b = resumed.Model.state_dict();
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        foreach (var (name, tensor) in a)
        {
            using var diff = (tensor.to_type(torch.ScalarType.Float64) - b[name].to_type(torch.ScalarType.Float64)).abs().max();
            Assert.True(diff.ToDouble() <= 1e-6, $"{name} differs by {diff.ToDouble()}");
        }
        Assert.Equal(straight.History[1].ValAccuracy, resumed.History[1].ValAccuracy);
        Assert.Equal(straight.Step, resumed.Step);
    }

    [Fact]
    public void Live_tensor_count_does_not_grow_across_steps()
    {
        var spec = Spec(epochs: 4);
        spec.Augment = new AugmentSpec { CropPadding = 2, Flip = true, Contrast = 0.2 };
        spec.Optimizer = new OptimizerSpec { Name = "adam", Lr = 0.001 };
        using var session = new TrainingSession(spec, TinyData.Splits(128, 64), torch.CPU, Path.Combine(_dir, "leak"));
        // The first epoch creates the optimizer's state tensors; count after it.
        session.Run(untilEpoch: 1);
        var afterOne = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        session.Run(untilEpoch: 4); // 3 more epochs: 12 steps, 3 evaluations, 3 checkpoints
        var afterFour = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        Assert.True(afterFour - afterOne <= 0, $"live tensors grew from {afterOne} to {afterFour} over 12 steps");
    }

    [Fact]
    public void A_checkpoint_loads_back_into_a_model_that_evaluates_the_same()
    {
        var data = TinyData.Splits(128, 64);
        using var session = new TrainingSession(Spec(epochs: 1), data, torch.CPU, Path.Combine(_dir, "eval"));
        var result = session.Run();
        var (model, header, spec) = TrainingSession.LoadModel(result.LastCheckpoint!, torch.CPU);
        using (model)
        {
            Assert.Equal("simple-cnn", header.Model);
            Assert.Equal(1, header.EpochsCompleted);
            Assert.Equal(4, header.Classes.Length);
            Assert.Equal("simple-cnn", spec.Model.Name);
            using var loader = new Orchestrator.Worker.Data.BatchLoader(data.Validation, new(64, false, false, 0));
            using var transform = new Orchestrator.Worker.Data.DeviceTransform(Orchestrator.Worker.Data.DeviceTransform.For(data.Info, spec.Augment), torch.CPU);
            var eval = Evaluator.Evaluate(model, loader, transform, 4, CancellationToken.None);
            Assert.Equal(result.Last.ValAccuracy, eval.Top1, 6);
            Assert.Equal(64, eval.ConfusionMatrix.Sum(r => r.Sum()));
        }
    }

    [Fact]
    public void A_checkpoint_serves_as_pretrained_weights_with_a_new_head_for_fewer_classes()
    {
        var data = TinyData.Splits(128, 64);
        using var source = new TrainingSession(Spec(epochs: 1), data, torch.CPU, Path.Combine(_dir, "source"));
        var trained = source.Run();

        // Two classes instead of four: keep only two quadrants.
        var keep = Enumerable.Range(0, data.Train.Count).Where(i => data.Train.GetLabel(i) < 2).ToArray();
        var two = new Orchestrator.Data.InMemoryImageDataset("two", data.Train.Shape,
            keep.SelectMany(i => { var b = new byte[data.Train.Shape.Size]; data.Train.CopyImage(i, b); return b; }).ToArray(),
            keep.Select(data.Train.GetLabel).ToArray(), ["top-left", "top-right"]);
        var twoSplits = new Orchestrator.Data.DatasetSplits(two, two, data.Info with { Classes = ["top-left", "top-right"] });
        var spec = Spec(epochs: 1);
        spec.Pretrained = new PretrainedSpec { Path = trained.BestCheckpoint!, FreezeBackbone = true };
        using var transfer = new TrainingSession(spec, twoSplits, torch.CPU, Path.Combine(_dir, "transfer"));
        Assert.NotNull(transfer.PretrainedReport);
        Assert.Contains(transfer.PretrainedReport!.Skipped, n => n.StartsWith("fc2", StringComparison.Ordinal));
        Assert.Contains("conv1.weight", transfer.PretrainedReport.Loaded);
        using var a = source.Model.state_dict()["conv1.weight"].clone();
        transfer.Run();
        // The frozen backbone did not move; the new head learned the two classes.
        Assert.True(a.allclose(transfer.Model.state_dict()["conv1.weight"]));
        Assert.Equal(2, transfer.Model.NumClasses);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}

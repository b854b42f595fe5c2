using Orchestrator.Data;
using Orchestrator.Trials;
using Orchestrator.Worker.Native;
using Orchestrator.Worker.Training;
using Orchestrator.Worker.UnitTests.Support;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace Orchestrator.Worker.UnitTests.Training;

/// <summary>Magnitude pruning in real training runs: sparsity reached, masks through resume, zeros in exports, learning.</summary>
[Collection(SerialTorchCollection.Name)]
public sealed class PruningTests : IDisposable
{
    private static readonly string[] Prunable = ["conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"];
    private readonly string _dir = Directory.CreateTempSubdirectory("orch-prune-").FullName;

    public PruningTests() => TorchRuntime.Initialize();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>192 images in batches of 32: 6 steps an epoch; masks updated at steps 4, 8 and 12 (the end of epoch 2).</summary>
    private static TrialSpec Spec(string scope = "layer", int epochs = 3) => new()
    {
        Data = new DataSpec { Name = "synthetic" },
        Model = new ModelSpec { Name = "simple-cnn", Dropout = 0.2 },
        Epochs = epochs,
        BatchSize = 32,
        Seed = 5,
        Optimizer = new OptimizerSpec { Name = "sgd", Lr = 0.05, Momentum = 0.9 },
        Pruning = new PruningSpec { Sparsity = 0.75, Frequency = 4, EndEpoch = 2, Scope = scope },
    };

    private static long Zeros(Tensor t) => t.numel() - t.count_nonzero().ToInt64();

    private static bool Same(Tensor a, Tensor b) => a.eq(b).all().item<bool>();

    [Fact]
    public void Each_layer_reaches_the_target_sparsity_and_biases_and_batch_norm_keep_their_values()
    {
        using var session = new TrainingSession(Spec(), TinyData.Splits(192, 64), torch.CPU, Path.Combine(_dir, "layer"));
        session.Run(untilEpoch: 1);
        var live = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        var result = session.Run();
        // Two mask updates and twelve masked steps later, no tensor of theirs is left behind.
        Assert.True(DisposeScopeManager.Statistics.ThreadTotalLiveCount <= live, $"live tensors grew from {live} to {DisposeScopeManager.Statistics.ThreadTotalLiveCount}");
        var weights = session.Model.state_dict();
        foreach (var name in Prunable)
        {
            var n = weights[name].numel();
            Assert.Equal((long)Math.Round(0.75 * n), Zeros(weights[name]));
        }
        foreach (var name in weights.Keys.Where(k => !Prunable.Contains(k) && !k.Contains("num_batches", StringComparison.Ordinal)))
            Assert.True(Zeros(weights[name]) == 0, $"{name} was pruned");
        // Epoch 1 ended after step 6, its last update at step 4: s(4) = 0.75 − 0.75 · (1 − 4/12)³.
        Assert.Equal(0.75 - 0.75 * Math.Pow(8.0 / 12, 3), session.History[0].Sparsity, 3);
        Assert.Equal(0.75, session.History[1].Sparsity, 4);
        Assert.Equal(0.75, session.History[2].Sparsity, 4);
        Assert.True(result.Last.ValAccuracy > 0.6, $"validation accuracy {result.Last.ValAccuracy} (chance is 0.25)");
        // The metric is reported per epoch in metrics.jsonl, as the others are.
        Assert.Contains("\"sparsity\":0.75", File.ReadAllLines(Path.Combine(result.RunDir, "metrics.jsonl"))[^1], StringComparison.Ordinal);
    }

    [Fact]
    public void Global_scope_reaches_the_target_over_all_weights_with_one_threshold()
    {
        using var session = new TrainingSession(Spec("global", epochs: 2), TinyData.Splits(192, 64), torch.CPU, Path.Combine(_dir, "global"));
        session.Run();
        var weights = session.Model.state_dict();
        var total = Prunable.Sum(n => weights[n].numel());
        Assert.Equal((long)Math.Round(0.75 * total), Prunable.Sum(n => Zeros(weights[n])));
        Assert.Equal(0.75, session.Pruner!.Sparsity, 6);
        // One threshold: the small-fan-in first conv (larger weights) keeps more than the wide fc1.
        double Fraction(string n) => (double)Zeros(weights[n]) / weights[n].numel();
        Assert.True(Fraction("conv1.weight") < Fraction("fc1.weight"), $"conv1 {Fraction("conv1.weight")}, fc1 {Fraction("fc1.weight")}");
        // Every surviving weight is at least as large as every pruned one's value before pruning: no live weight is below the threshold.
        var smallestKept = Prunable.Min(n => weights[n].abs().masked_select(weights[n].ne(0)).min().ToDouble());
        Assert.True(smallestKept > 0);
    }

    [Fact]
    public void A_resumed_run_continues_the_same_schedule_with_the_same_masks()
    {
        var spec = Spec();
        var data = TinyData.Splits(192, 64);
        using var straight = new TrainingSession(spec, data, torch.CPU, Path.Combine(_dir, "straight"));
        straight.Run();

        Dictionary<string, Tensor> afterOne;
        using (var first = new TrainingSession(spec, data, torch.CPU, Path.Combine(_dir, "split")))
        {
            first.Run(untilEpoch: 1);
            afterOne = Prunable.ToDictionary(n => n, n => first.Pruner!.MaskOf(n).clone());
        }
        // Resumed between mask updates (step 6; the next at 8): the masks come back as they were saved.
        using var resumed = TrainingSession.Resume(Path.Combine(_dir, "split", "last.ckpt"), data, torch.CPU, Path.Combine(_dir, "split"));
        foreach (var n in Prunable) Assert.True(Same(afterOne[n], resumed.Pruner!.MaskOf(n)), $"{n}: mask changed through the checkpoint");
        Assert.Equal(straight.History[0].Sparsity, resumed.Pruner!.Sparsity);
        resumed.Run();

        foreach (var n in Prunable)
        {
            Assert.True(Same(straight.Pruner!.MaskOf(n), resumed.Pruner.MaskOf(n)), $"{n}: the resumed run pruned other weights");
            Assert.True(Same(straight.Model.state_dict()[n].eq(0), resumed.Model.state_dict()[n].eq(0)), $"{n}: zeros differ");
        }
        foreach (var (name, tensor) in straight.Model.state_dict())
        {
            using var diff = (tensor.to_type(ScalarType.Float64) - resumed.Model.state_dict()[name].to_type(ScalarType.Float64)).abs().max();
            Assert.True(diff.ToDouble() <= 1e-6, $"{name} differs by {diff.ToDouble()}");
        }
        Assert.Equal(straight.History.Select(h => h.Sparsity), resumed.History.Select(h => h.Sparsity));
        foreach (var t in afterOne.Values) t.Dispose();
    }

    [Fact]
    public void Exported_weights_hold_the_pruned_zeros_in_pytorch_and_safetensors_files()
    {
        using var session = new TrainingSession(Spec(epochs: 2), TinyData.Splits(192, 64), torch.CPU, Path.Combine(_dir, "export"));
        var result = session.Run();
        // What `orch best --download --format pytorch|safetensors` does with a checkpoint.
        var (model, _, _) = TrainingSession.LoadModel(result.LastCheckpoint!, torch.CPU);
        using (model)
        {
            model.save_py(Path.Combine(_dir, "model.pt"));
            model.save_safetensors(Path.Combine(_dir, "model.safetensors"));
        }
        var files = new Dictionary<string, Dictionary<string, Tensor>>
        {
            ["pt"] = TorchSharp.PyBridge.PyTorchUnpickler.UnpickleStateDict(Path.Combine(_dir, "model.pt"))
                .Cast<System.Collections.DictionaryEntry>().ToDictionary(e => (string)e.Key, e => (Tensor)e.Value!),
            ["safetensors"] = Safetensors.LoadStateDict(Path.Combine(_dir, "model.safetensors")),
        };
        foreach (var (format, weights) in files)
        {
            foreach (var n in Prunable)
            {
                var mask = session.Pruner!.MaskOf(n);
                Assert.Equal((long)Math.Round(0.75 * mask.numel()), Zeros(weights[n]));
                Assert.True(Same(weights[n].eq(0), mask.eq(0)), $"{format} {n}: zeros are not where the mask prunes");
            }
            Assert.Equal(0, Zeros(weights["fc1.bias"]));
        }
    }

    [Fact]
    public void A_pruned_model_still_learns_fashion_mnist()
    {
        var spec = new TrialSpec
        {
            Data = new DataSpec { Name = "fashion-mnist", LimitTrain = 1200, LimitTest = 300, Download = false },
            Model = new ModelSpec { Name = "simple-cnn" },
            Epochs = 2,
            BatchSize = 64,
            Seed = 1,
            Optimizer = new OptimizerSpec { Name = "sgd", Lr = 0.05, Momentum = 0.9 },
            Pruning = new PruningSpec { Sparsity = 0.8, Frequency = 10 },
        };
        var data = DatasetLoader.Load(spec.Data, spec.Seed, null, CancellationToken.None);
        using var session = new TrainingSession(spec, data, torch.CPU, Path.Combine(_dir, "fashion"));
        var result = session.Run();
        Assert.Equal(0.8, result.Last.Sparsity, 3);
        Assert.True(result.Last.TrainLoss < session.History[0].TrainLoss, "training loss did not fall while pruning");
        Assert.True(result.Last.ValAccuracy > 0.7, $"validation accuracy {result.Last.ValAccuracy} at 80 % sparsity (chance is 0.1)");
    }
}

using System.Collections.Concurrent;
using Orchestrator.Data;
using Orchestrator.Trials;
using Orchestrator.Worker.Models;
using Orchestrator.Worker.Native;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Orchestrator.Interop.FunctionalTests;

/// <summary>One built-in model configuration the interop tests export: model, stem, input, head size, data.</summary>
/// <param name="Dataset">fashion-mnist (the real test images) or synthetic (CIFAR-shaped, at <see cref="Shape"/>'s side).</param>
public sealed record ModelCase(string Name, string Model, string? Stem, ImageShape Shape, int Classes, string Dataset,
    bool BatchNorm = true, double Dropout = 0, int Seed = 1)
{
    public override string ToString() => Name;

    /// <summary>
    /// Every case, by name: both stems, every depth, several head sizes, with and without BatchNorm. Small
    /// inputs (16–64 px; ResNet-34/50 with the CIFAR stem at 16 px) keep each comparison to seconds on two cores.
    /// </summary>
    public static IReadOnlyDictionary<string, ModelCase> All { get; } = new ModelCase[]
    {
        new("simple-cnn", "simple-cnn", null, new ImageShape(1, 28, 28), 10, "fashion-mnist"),
        new("simple-cnn-nobn-dropout", "simple-cnn", null, new ImageShape(3, 32, 32), 7, "synthetic", BatchNorm: false, Dropout: 0.5),
        new("resnet18-cifar", "resnet18", "cifar", new ImageShape(3, 32, 32), 10, "synthetic", Dropout: 0.2),
        new("resnet18-imagenet", "resnet18", "imagenet", new ImageShape(3, 64, 64), 5, "synthetic"),
        new("resnet34-cifar", "resnet34", "cifar", new ImageShape(3, 16, 16), 100, "synthetic"),
        new("resnet34-imagenet", "resnet34", "imagenet", new ImageShape(3, 64, 64), 10, "synthetic"),
        new("resnet50-cifar", "resnet50", "cifar", new ImageShape(3, 16, 16), 10, "synthetic"),
        new("resnet50-imagenet-gray", "resnet50", "imagenet", new ImageShape(1, 28, 28), 3, "fashion-mnist"),
    }.ToDictionary(c => c.Name, StringComparer.Ordinal);

    public static TheoryData<string> Names() => [.. All.Keys];
}

/// <summary>A case made ready: the TorchSharp model (random weights, randomised BatchNorm statistics), 256 test images, and its logits.</summary>
public sealed class PreparedModel : IDisposable
{
    public required ModelCase Case { get; init; }
    public required ImageClassifier Model { get; init; }
    /// <summary>[256, C, H, W] pixels in [0, 1]: the ONNX graph's input.</summary>
    public required Tensor Raw { get; init; }
    /// <summary>(Raw − mean) / std: the TorchSharp and PyTorch models' input.</summary>
    public required Tensor Normalized { get; init; }
    public required float[] Mean { get; init; }
    public required float[] Std { get; init; }
    public required string[] Classes { get; init; }
    /// <summary>TorchSharp's eval-mode logits for the 256 images, row-major [256, classes].</summary>
    public required float[] Logits { get; init; }
    public int Count => (int)Raw.shape[0];

    public void Dispose()
    {
        Model.Dispose();
        Raw.Dispose();
        Normalized.Dispose();
    }
}

/// <summary>Makes each case once per test run (shared by the ONNX, PyTorch and quantization tests) and a work folder.</summary>
public sealed class InteropModels : IDisposable
{
    public const int Images = 256;
    private readonly ConcurrentDictionary<string, Lazy<PreparedModel>> _prepared = new(StringComparer.Ordinal);

    public InteropModels()
    {
        TorchRuntime.Initialize();
        torch.set_num_threads(2);
        Dir = Directory.CreateTempSubdirectory("orch-interop-").FullName;
    }

    public string Dir { get; }

    public string File(string name) => Path.Combine(Dir, name);

    public PreparedModel Get(string name) =>
        _prepared.GetOrAdd(name, n => new Lazy<PreparedModel>(() => Prepare(ModelCase.All[n]))).Value;

    private static PreparedModel Prepare(ModelCase c)
    {
        var data = DatasetLoader.Load(new DataSpec { Name = c.Dataset, ImageSize = c.Dataset == "synthetic" ? c.Shape.Height : null, LimitTrain = 1, LimitTest = Images, Download = false },
            seed: 1, null, CancellationToken.None);
        var images = data.Validation;
        Assert.Equal(c.Shape, images.Shape);
        var s = c.Shape;
        var pixels = new byte[(long)images.Count * s.Size];
        for (var i = 0; i < images.Count; i++) images.CopyImage(i, pixels.AsSpan(i * s.Size, s.Size));
        var raw = torch.tensor(pixels.Select(p => p / 255f).ToArray(), [images.Count, s.Channels, s.Height, s.Width]);
        var mean = Worker.Export.InferenceGraphBuilder.PerChannel(data.Info.Mean, s.Channels, "mean");
        var std = Worker.Export.InferenceGraphBuilder.PerChannel(data.Info.Std, s.Channels, "std");
        using var m = torch.tensor(mean, [1, s.Channels, 1, 1]);
        using var sd = torch.tensor(std, [1, s.Channels, 1, 1]);
        var normalized = (raw - m) / sd;

        torch.manual_seed(c.Seed);
        var model = ModelRegistry.Create(new ModelSpec { Name = c.Model, Stem = c.Stem, BatchNorm = c.BatchNorm, Dropout = c.Dropout }, s, c.Classes);
        RandomizeBatchNorm(model, c.Seed);
        model.eval();
        float[] logits;
        using (torch.no_grad())
        using (var y = model.forward(normalized))
            logits = y.data<float>().ToArray();
        var classes = data.Info.Classes.Count == c.Classes ? [.. data.Info.Classes] : Enumerable.Range(0, c.Classes).Select(i => $"class {i}").ToArray();
        return new PreparedModel { Case = c, Model = model, Raw = raw, Normalized = normalized, Mean = mean, Std = std, Classes = classes, Logits = logits };
    }

    /// <summary>Trained-looking BatchNorm layers (fresh ones are the identity, which would hide folding mistakes).</summary>
    private static void RandomizeBatchNorm(nn.Module model, int seed)
    {
        using var noGrad = torch.no_grad();
        var g = new Generator((ulong)seed + 1000);
        foreach (var (_, module) in model.named_modules())
        {
            if (module is not BatchNorm2d bn) continue;
            bn.running_mean!.uniform_(-0.2, 0.2, g);
            bn.running_var!.uniform_(0.5, 2.0, g);
            bn.weight!.uniform_(0.6, 1.4, g);
            bn.bias!.uniform_(-0.2, 0.2, g);
        }
    }

    public void Dispose()
    {
        foreach (var p in _prepared.Values.Where(l => l.IsValueCreated)) p.Value.Dispose();
        try { Directory.Delete(Dir, recursive: true); } catch (IOException) { }
    }
}

[CollectionDefinition(Name)]
public sealed class InteropCollection : ICollectionFixture<InteropModels>
{
    public const string Name = "interop";
}

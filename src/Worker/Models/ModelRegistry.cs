using Orchestrator.Data;
using Orchestrator.Trials;

namespace Orchestrator.Worker.Models;

/// <summary>Builds the models a <see cref="ModelSpec"/> names (exactly <see cref="KnownNames.Models"/>).</summary>
public static class ModelRegistry
{
    /// <summary>Largest input side for which the default stem is cifar (no early down-sampling).</summary>
    public const int CifarStemMaxSide = 64;

    private static readonly Dictionary<string, Func<ModelSpec, ImageShape, int, ImageClassifier>> Factories = new()
    {
        ["simple-cnn"] = (s, i, n) => new SimpleCnn(i, n, s.Dropout, s.BatchNorm),
        ["resnet18"] = (s, i, n) => new ResNet("resnet18", [2, 2, 2, 2], bottleneck: false, i.Channels, n, ResolveStem(s.Stem, i), s.Dropout),
        ["resnet34"] = (s, i, n) => new ResNet("resnet34", [3, 4, 6, 3], bottleneck: false, i.Channels, n, ResolveStem(s.Stem, i), s.Dropout),
        ["resnet50"] = (s, i, n) => new ResNet("resnet50", [3, 4, 6, 3], bottleneck: true, i.Channels, n, ResolveStem(s.Stem, i), s.Dropout),
    };

    /// <summary>The model names, in <see cref="KnownNames.Models"/> order.</summary>
    public static IReadOnlyList<string> Names { get; } = [.. KnownNames.Models.Where(Factories.ContainsKey)];

    /// <summary>
    /// Creates the model on CPU (the trainer moves it). Throws ArgumentException("unknown model 'x': one of ...")
    /// for unknown names, and for an unknown stem.
    /// </summary>
    public static ImageClassifier Create(ModelSpec spec, ImageShape input, int numClasses)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (!Factories.TryGetValue(spec.Name, out var factory))
            throw new ArgumentException($"unknown model '{spec.Name}': {KnownNames.OneOf(KnownNames.Models)}", nameof(spec));
        return factory(spec, input, numClasses);
    }

    /// <summary>The stem for a spec's <c>stem</c> field: cifar or imagenet, or by image size when null.</summary>
    public static ResNetStem ResolveStem(string? stem, ImageShape input) => stem switch
    {
        null => Math.Max(input.Height, input.Width) <= CifarStemMaxSide ? ResNetStem.Cifar : ResNetStem.ImageNet,
        "cifar" => ResNetStem.Cifar,
        "imagenet" => ResNetStem.ImageNet,
        _ => throw new ArgumentException($"unknown stem '{stem}': {KnownNames.OneOf(KnownNames.Stems)}", nameof(stem)),
    };
}

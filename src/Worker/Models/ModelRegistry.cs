using Orchestrator.Data;
using Orchestrator.Sdk;
using Orchestrator.Trials;
using Orchestrator.Worker.Plugins;

namespace Orchestrator.Worker.Models;

/// <summary>
/// Builds the model a <see cref="ModelSpec"/> names: a built-in one (exactly <see cref="KnownNames.Models"/>)
/// or a plug-in's. Both are <see cref="IModelFactory"/>s asked the same <see cref="ModelRequest"/>.
/// </summary>
public static class ModelRegistry
{
    /// <summary>Largest input side for which the default stem is cifar (no early down-sampling).</summary>
    public const int CifarStemMaxSide = 64;

    private static readonly Dictionary<string, IModelFactory> Factories = new()
    {
        ["simple-cnn"] = new BuiltIn(r => new SimpleCnn(r.Input, r.NumClasses, r.Dropout, r.Args.GetBool("batchNorm", true))),
        ["resnet18"] = new BuiltIn(r => new ResNet("resnet18", [2, 2, 2, 2], bottleneck: false, r.Input.Channels, r.NumClasses, Stem(r), r.Dropout)),
        ["resnet34"] = new BuiltIn(r => new ResNet("resnet34", [3, 4, 6, 3], bottleneck: false, r.Input.Channels, r.NumClasses, Stem(r), r.Dropout)),
        ["resnet50"] = new BuiltIn(r => new ResNet("resnet50", [3, 4, 6, 3], bottleneck: true, r.Input.Channels, r.NumClasses, Stem(r), r.Dropout)),
    };

    /// <summary>The model names, in <see cref="KnownNames.Models"/> order.</summary>
    public static IReadOnlyList<string> Names { get; } = [.. KnownNames.Models.Where(Factories.ContainsKey)];

    /// <summary>
    /// Creates the model on CPU (the trainer moves it). Throws ArgumentException("unknown model 'x': one of ...")
    /// for unknown names, and for an unknown stem; <see cref="PluginException"/> when a plug-in's factory fails.
    /// </summary>
    /// <param name="plugins">The trial's plug-ins; needed when <see cref="ModelSpec.Plugin"/> is set.</param>
    public static ImageClassifier Create(ModelSpec spec, ImageShape input, int numClasses, TrialPlugins? plugins = null)
    {
        ArgumentNullException.ThrowIfNull(spec);
        IModelFactory? factory;
        if (spec.Plugin is not null)
            factory = plugins?.Model ?? throw new ArgumentException($"model '{spec.Name}' comes from the plug-in {spec.Plugin}, which was not loaded", nameof(spec));
        else if (!Factories.TryGetValue(spec.Name, out factory))
            throw new ArgumentException($"unknown model '{spec.Name}': {KnownNames.OneOf(KnownNames.Models)}", nameof(spec));

        var module = factory.Create(Request(spec, input, numClasses));
        if (module is ImageClassifier builtIn) return builtIn;
        return new PluginModel(module, numClasses, spec.Plugin ?? "?", spec.Name);
    }

    /// <summary>The request for a spec: the plug-in's <c>args</c>, plus <c>batchNorm</c> and <c>stem</c> (the built-ins' knobs).</summary>
    public static ModelRequest Request(ModelSpec spec, ImageShape input, int numClasses)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var args = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["batchNorm"] = spec.BatchNorm ? "true" : "false",
        };
        if (spec.Stem is not null) args["stem"] = spec.Stem;
        foreach (var (key, value) in spec.Args ?? []) args[key] = value;
        return new ModelRequest(input, numClasses, spec.Dropout, new PluginArgs(args, "model"));
    }

    /// <summary>The stem for a spec's <c>stem</c> field: cifar or imagenet, or by image size when null.</summary>
    public static ResNetStem ResolveStem(string? stem, ImageShape input) => stem switch
    {
        null => Math.Max(input.Height, input.Width) <= CifarStemMaxSide ? ResNetStem.Cifar : ResNetStem.ImageNet,
        "cifar" => ResNetStem.Cifar,
        "imagenet" => ResNetStem.ImageNet,
        _ => throw new ArgumentException($"unknown stem '{stem}': {KnownNames.OneOf(KnownNames.Stems)}", nameof(stem)),
    };

    private static ResNetStem Stem(ModelRequest r) =>
        ResolveStem(r.Args.Contains("stem") ? r.Args.GetString("stem", "") : null, r.Input);

    /// <summary>A built-in model, registered through the same interface as a plug-in's.</summary>
    private sealed class BuiltIn(Func<ModelRequest, ImageClassifier> create) : IModelFactory
    {
        public TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor> Create(ModelRequest request) => create(request);
    }
}

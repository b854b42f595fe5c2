namespace Orchestrator.Trials;

/// <summary>
/// The names a spec may use. The coordinator checks specs against these at submit, without
/// loading TorchSharp; the worker's registries implement exactly these (a test keeps them equal).
/// </summary>
public static class KnownNames
{
    public static readonly IReadOnlyList<string> Models = ["simple-cnn", "resnet18", "resnet34", "resnet50"];
    public static readonly IReadOnlyList<string> Datasets = ["fashion-mnist", "mnist", "cifar10", "cifar100", "imagefolder", "synthetic"];
    public static readonly IReadOnlyList<string> Optimizers = ["sgd", "adam", "adamw", "rmsprop"];
    public static readonly IReadOnlyList<string> Schedules = ["constant", "step", "cosine", "onecycle", "plateau"];
    public static readonly IReadOnlyList<string> Losses = ["cross-entropy", "focal"];
    public static readonly IReadOnlyList<string> Stems = ["cifar", "imagenet"];
    public static readonly IReadOnlyList<string> WeightFormats = ["auto", "torchsharp", "pytorch", "safetensors"];
    public static readonly IReadOnlyList<string> PruningScopes = ["layer", "global"];
    public static readonly IReadOnlyList<string> Precisions = ["fp32", "bf16", "fp16"];

    /// <summary>"one of a, b, c" for error messages.</summary>
    public static string OneOf(IReadOnlyList<string> names) => "one of " + string.Join(", ", names);
}

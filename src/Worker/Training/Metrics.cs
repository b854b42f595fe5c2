using System.Text.Json.Serialization;

namespace Orchestrator.Worker.Training;

/// <summary>Evaluation of a model on a data set.</summary>
public sealed record EvalResult(
    int Count,
    double Loss,
    double Top1,
    double Top5,
    double[] PerClassAccuracy,
    long[][] ConfusionMatrix);

/// <summary>What one epoch of training produced; one line of metrics.jsonl.</summary>
public sealed record EpochMetrics(
    int Epoch,
    long Step,
    double LearningRate,
    double TrainLoss,
    double TrainAccuracy,
    double ValLoss,
    double ValAccuracy,
    double ValTop5,
    double[] PerClassAccuracy,
    long[][]? ConfusionMatrix,
    double Seconds,
    double ImagesPerSecond,
    double DataWaitSeconds,
    double MeanStepSeconds = double.NaN,
    double AggregationSeconds = double.NaN,
    double AggregationBytes = double.NaN,
    double Sparsity = double.NaN);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, WriteIndented = false,
    NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals)]
[JsonSerializable(typeof(EpochMetrics))]
[JsonSerializable(typeof(EvalResult))]
[JsonSerializable(typeof(List<EpochMetrics>))]
public sealed partial class MetricsJson : JsonSerializerContext;

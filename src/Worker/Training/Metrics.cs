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
    double Sparsity = double.NaN,
    double SkippedSteps = double.NaN,
    double LossScale = double.NaN,
    Dictionary<string, double>? PluginMetrics = null)
{
    /// <summary>The value of one of the metrics a run may be judged by (<see cref="Orchestrator.Trials.MetricNames.Objectives"/>).</summary>
    public double Value(string metric) => metric switch
    {
        Orchestrator.Trials.MetricNames.ValAccuracy => ValAccuracy,
        Orchestrator.Trials.MetricNames.ValLoss => ValLoss,
        Orchestrator.Trials.MetricNames.ValTop5 => ValTop5,
        Orchestrator.Trials.MetricNames.TrainLoss => TrainLoss,
        Orchestrator.Trials.MetricNames.TrainAccuracy => TrainAccuracy,
        _ => throw new ArgumentException($"'{metric}' is not a metric a run is judged by", nameof(metric)),
    };
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, WriteIndented = false,
    NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals)]
[JsonSerializable(typeof(EpochMetrics))]
[JsonSerializable(typeof(EvalResult))]
[JsonSerializable(typeof(List<EpochMetrics>))]
public sealed partial class MetricsJson : JsonSerializerContext;

using System.Globalization;
using Google.Protobuf.WellKnownTypes;
using Orchestrator.TensorBoard;
using Orchestrator.TensorBoard.Protos.HParams;
using Orchestrator.Trials;

namespace Orchestrator.Worker.Training;

/// <summary>
/// Writes a training run as a TensorBoard run: the HParams session start (the trial's settings)
/// when the run starts, the epoch's scalars (losses, accuracies, learning rate) after every epoch,
/// and the session end on <see cref="Dispose"/>. Hyperparameters are named by the dotted paths a
/// sweep uses (<c>optimizer.lr</c>), so single runs and exported sweeps share columns.
/// </summary>
public sealed class TensorBoardObserver(string runDir, TrialSpec spec) : ITrainingObserver, IDisposable
{
    private EventFileWriter? _writer;
    private bool _completed;
    private int _epochs = spec.Epochs;

    /// <summary>The event file, once the run has started.</summary>
    public string? EventFile => _writer?.Path;

    public void OnRunStart(RunInfo info)
    {
        _writer ??= new EventFileWriter(runDir);
        _epochs = info.Epochs;
        _writer.WriteSummary(info.StartEpoch, HParamsSummaries.SessionStart(HParamsOf(spec), DateTimeOffset.UtcNow, modelUri: Path.GetFullPath(info.RunDir)));
    }

    public void OnEpochEnd(EpochMetrics metrics)
    {
        var m = metrics;
        if (_writer is null) return;
        _writer.WriteScalars(m.Epoch, new Dictionary<string, double>
        {
            [TensorBoardTags.For(MetricNames.TrainLoss)] = m.TrainLoss,
            [TensorBoardTags.For(MetricNames.TrainAccuracy)] = m.TrainAccuracy,
            [TensorBoardTags.For(MetricNames.ValLoss)] = m.ValLoss,
            [TensorBoardTags.For(MetricNames.ValAccuracy)] = m.ValAccuracy,
            [TensorBoardTags.For(MetricNames.ValTop5)] = m.ValTop5,
            [TensorBoardTags.For(MetricNames.LearningRate)] = m.LearningRate,
            [TensorBoardTags.For(MetricNames.ImagesPerSecond)] = m.ImagesPerSecond,
            [TensorBoardTags.For(MetricNames.Sparsity)] = m.Sparsity,
            [TensorBoardTags.For(MetricNames.SkippedSteps)] = m.SkippedSteps,
            [TensorBoardTags.For(MetricNames.LossScale)] = m.LossScale,
        });
        _completed = m.Epoch >= _epochs;
    }

    /// <summary>The trial's hyperparameters as TensorBoard values, by the sweep's dotted paths.</summary>
    public static Dictionary<string, Value> HParamsOf(TrialSpec s)
    {
        var inv = CultureInfo.InvariantCulture;
        var text = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["data.name"] = s.Data.Name,
            ["model.name"] = s.Model.Name,
            ["model.dropout"] = s.Model.Dropout.ToString("R", inv),
            ["epochs"] = s.Epochs.ToString(inv),
            ["batchSize"] = s.BatchSize.ToString(inv),
            ["seed"] = s.Seed.ToString(inv),
            ["optimizer.name"] = s.Optimizer.Name,
            ["optimizer.lr"] = s.Optimizer.Lr.ToString("R", inv),
            ["optimizer.momentum"] = s.Optimizer.Momentum.ToString("R", inv),
            ["optimizer.weightDecay"] = s.Optimizer.WeightDecay.ToString("R", inv),
            ["schedule.name"] = s.Schedule.Name,
            ["loss.name"] = s.Loss.Name,
            ["loss.labelSmoothing"] = s.Loss.LabelSmoothing.ToString("R", inv),
            ["augment.flip"] = s.Augment.Flip ? "true" : "false",
            ["augment.cropPadding"] = s.Augment.CropPadding.ToString(inv),
        };
        if (s.Pruning is { } p) text["pruning.sparsity"] = p.Sparsity.ToString("R", inv);
        return text.ToDictionary(kv => kv.Key, kv => HParamsSummaries.ToValue(kv.Value), StringComparer.Ordinal);
    }

    public void Dispose()
    {
        if (_writer is null) return;
        _writer.WriteSummary(0, HParamsSummaries.SessionEnd(_completed ? Status.Success : Status.Failure, DateTimeOffset.UtcNow));
        _writer.Dispose();
        _writer = null;
    }
}

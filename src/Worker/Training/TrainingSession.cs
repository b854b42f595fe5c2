using System.Diagnostics;
using System.Text.Json;
using Orchestrator.Data;
using Orchestrator.Trials;
using Orchestrator.Worker.Checkpoints;
using Orchestrator.Worker.Data;
using Orchestrator.Worker.Models;
using Orchestrator.Worker.Plugins;
using Orchestrator.Worker.Pruning;
using TorchSharp;
using static TorchSharp.torch;

namespace Orchestrator.Worker.Training;

/// <summary>
/// One training run of one trial: model, optimiser, schedule, loss, data loaders, checkpoints.
/// <see cref="Run"/> is synchronous and must stay on one thread: TorchSharp dispose scopes are
/// thread-static, so every step runs inside a scope on the calling thread with no await inside.
/// </summary>
public sealed partial class TrainingSession : IDisposable
{
    /// <summary>Report running loss/accuracy every this many batches (reading them syncs the device).</summary>
    public const int LogEvery = 20;

    private readonly TrialSpec _spec;
    private readonly DatasetSplits _data;
    private readonly Device _device;
    private readonly ITrainingObserver _observer;
    private readonly ImageClassifier _model;
    private readonly TorchSharp.Modules.OptimizerHelper _optimizer;
    private readonly LossFunction _loss;
    private readonly LrSchedule _schedule;
    private readonly BatchLoader _trainLoader;
    private readonly BatchLoader _valLoader;
    private readonly DeviceTransform _transform;
    private readonly List<EpochMetrics> _history = [];
    private readonly List<TorchSharp.Modules.Parameter> _trainable;
    private readonly MagnitudePruner? _pruner;
    // bf16/fp16: the reduced-precision compute copy of _model (the fp32 master); null for fp32.
    private readonly MixedPrecision? _mixed;
    private int _epochsCompleted;
    private long _step;
    // The best epoch by checkpoint.bestMetric (a sweep's objective), and its validation accuracy.
    private double _bestAccuracy = double.NegativeInfinity;
    private int _bestEpoch;

    private readonly DistributedContext? _dist;
    private readonly IReadOnlyList<KeyValuePair<string, Sdk.IEvaluationMetric>> _metrics;
    private CancellationToken _runToken;

    /// <param name="plugins">The trial's plug-ins (<see cref="TrialPlugins.Load"/>), where its model comes from one; the caller disposes them after the session.</param>
    public TrainingSession(TrialSpec spec, DatasetSplits data, Device device, string runDir, ITrainingObserver? observer = null,
        DistributedContext? distributed = null, TrialPlugins? plugins = null)
    {
        _dist = distributed;
        int rank = distributed?.Rank ?? 0, world = distributed?.WorldSize ?? 1;
        _spec = spec;
        _data = data;
        _device = device;
        RunDir = runDir;
        _observer = observer ?? new NullObserver();
        Directory.CreateDirectory(runDir);

        Native.TorchRuntime.Seed(spec.Seed);
        var a = spec.Augment;
        // ImageNet-style crops from the decoded originals where the data set can (image folders), else on the device.
        var cropsOnHost = a.RandomResizedCrop && data.Train is ICroppingImageDataset;
        var trainPlan = new BatchPlan(spec.BatchSize, Shuffle: true, DropLast: data.Train.Count > spec.BatchSize, spec.Seed,
            CropSize: a.RandomResizedCrop ? null : a.CropSize, CropPadding: a.CropPadding, Flip: a.Flip, Rank: rank, WorldSize: world, LoaderThreads: spec.Data.LoaderThreads,
            RandomResizedCropSide: cropsOnHost ? a.CropSize ?? data.Info.Shape.Height : null);
        var valPlan = new BatchPlan(Math.Max(spec.BatchSize, 256), Shuffle: false, DropLast: false, spec.Seed,
            CropSize: a.ResizeTo is null ? a.CropSize : null, Rank: rank, WorldSize: world, PadShards: false, LoaderThreads: spec.Data.LoaderThreads);
        _trainLoader = new BatchLoader(data.Train, trainPlan);
        _valLoader = new BatchLoader(data.Validation, valPlan);
        _transform = new DeviceTransform(DeviceTransform.For(data.Info, a, cropsOnHost), device);

        var inputSide = a.CropSize ?? data.Info.Shape.Height;
        var input = new ImageShape(data.Info.Shape.Channels, inputSide, inputSide);
        _model = ModelRegistry.Create(spec.Model, input, data.Info.NumClasses, plugins);
        _metrics = plugins?.Metrics ?? [];
        if (spec.Pretrained is { } pretrained) PretrainedReport = LoadPretrained(_model, pretrained);
        _model.to(device);
        // After the move: to(device) replaces the Parameter objects.
        _trainable = _model.parameters().Where(p => p.requires_grad).ToList();
        if (MixedPrecision.DtypeOf(spec.Precision) is { } dtype)
            _mixed = MixedPrecision.Create(_model, () => ModelRegistry.Create(spec.Model, input, data.Info.NumClasses, plugins), device, dtype);
        _optimizer = OptimizerFactory.Create(spec.Optimizer, _trainable);
        _loss = new LossFunction(spec.Loss, LossFunction.ResolveClassWeights(spec.Loss, data.Train, data.Info.NumClasses), device);
        _schedule = new LrSchedule(spec.Schedule, spec.Optimizer.Lr, _trainLoader.BatchesPerEpoch, spec.Epochs);
        if (spec.Pruning is { } pruning)
            _pruner = new MagnitudePruner(_model, pruning, PruningSchedule.For(pruning, spec.Epochs, _trainLoader.BatchesPerEpoch));
    }

    public string RunDir { get; }
    public ImageClassifier Model => _model;
    public PretrainedLoadReport? PretrainedReport { get; }
    public int EpochsCompleted => _epochsCompleted;
    public long Step => _step;
    public IReadOnlyList<EpochMetrics> History => _history;
    /// <summary>The pruning masks, when the trial prunes.</summary>
    public MagnitudePruner? Pruner => _pruner;
    public string LastCheckpointPath => Path.Combine(RunDir, "last.ckpt");
    public string BestCheckpointPath => Path.Combine(RunDir, "best.ckpt");

    /// <summary>
    /// Trains the remaining epochs, or up to epoch <paramref name="untilEpoch"/> (a rung of an early-stopping
    /// searcher, say; the schedule still spans all epochs). Synchronous; cancellation ends it at the next batch.
    /// </summary>
    public TrainingResult Run(int? untilEpoch = null, CancellationToken ct = default)
    {
        var total = Stopwatch.StartNew();
        var saved = Train(Math.Min(untilEpoch ?? _spec.Epochs, _spec.Epochs), drain: CancellationToken.None, ct);
        var best = saved.Best ?? (File.Exists(BestCheckpointPath) ? BestCheckpointPath : null);
        var last = saved.Last ?? (File.Exists(LastCheckpointPath) ? LastCheckpointPath : null);
        return new TrainingResult(_history[^1], _bestAccuracy, _bestEpoch, _epochsCompleted, total.Elapsed.TotalSeconds,
            best ?? last, last, RunDir);
    }

    /// <summary>
    /// Trains the remaining epochs, unless <paramref name="drain"/> is signalled (the worker is
    /// shutting down): then the epoch in progress still finishes, with its metrics and checkpoint
    /// as at any epoch end, and the run stops at that boundary. In a data-parallel trial the ranks
    /// agree at every boundary, so a drain on any rank stops every rank after the same epoch and
    /// none is left waiting in a collective for a peer that left. Synchronous; cancellation
    /// (<paramref name="ct"/>) still ends it at the next batch.
    /// </summary>
    /// <returns>True when the drain stopped it before its last epoch; false when every epoch was trained.</returns>
    public bool RunUntilDrained(CancellationToken drain, CancellationToken ct = default) => Train(_spec.Epochs, drain, ct).Drained;

    /// <summary>Where <see cref="Train"/> stopped, and the checkpoints it wrote.</summary>
    /// <summary>Whether <paramref name="metrics"/> beat the best epoch so far by checkpoint.bestMetric and its goal (a NaN never does).</summary>
    private bool IsBetter(EpochMetrics metrics)
    {
        var metric = _spec.Checkpoint.BestMetric;
        var value = metrics.Value(metric);
        if (double.IsNaN(value)) return false;
        if (_history.FirstOrDefault(h => h.Epoch == _bestEpoch) is not { } bestEpoch) return true;
        var best = bestEpoch.Value(metric);
        return double.IsNaN(best) || (_spec.Checkpoint.MaximizesBest() ? value > best : value < best);
    }

    /// <summary>
    /// Whether trial.earlyStopping ends the run now: the last <c>patience</c> epochs brought no
    /// improvement of checkpoint.bestMetric by more than <c>minDelta</c>. Computed from the history,
    /// so a resumed run decides as the original would have.
    /// </summary>
    private bool PatienceRunOut()
    {
        if (_spec.EarlyStopping is not { } stop || _history.Count == 0) return false;
        var metric = _spec.Checkpoint.BestMetric;
        var sign = _spec.Checkpoint.MaximizesBest() ? 1.0 : -1.0;
        double? best = null;
        var since = 0;
        foreach (var value in _history.Select(h => sign * h.Value(metric)))
        {
            if (!double.IsNaN(value) && (best is null || value > best + stop.MinDelta))
            {
                best = value;
                since = 0;
            }
            else since++;
        }
        return since >= stop.Patience;
    }

    private readonly record struct TrainEnd(bool Drained, string? Last, string? Best);

    private TrainEnd Train(int stopAt, CancellationToken drain, CancellationToken ct)
    {
        _runToken = ct;
        // In a data-parallel trial the replicas are identical: rank 0 alone writes checkpoints.
        var writesCheckpoints = _dist is null || _dist.Rank == 0;
        _observer.OnRunStart(new RunInfo(_spec.Model.Name, _model.parameters().Sum(p => p.numel()), _data.Info.Name,
            _data.Train.Count, _data.Validation.Count, _device.ToString(), _epochsCompleted, _spec.Epochs, RunDir));
        using var metricsFile = new StreamWriter(Path.Combine(RunDir, "metrics.jsonl"), append: true);
        File.WriteAllText(Path.Combine(RunDir, "trial.yaml"), TrialSpecYaml.Serialize(_spec));
        string? lastSaved = null, bestSaved = null;
        // A schedule that starts at step 0 with an initial sparsity prunes before the first step.
        if (_step == 0 && _pruner is not null)
        {
            using var scope = torch.NewDisposeScope();
            _pruner.AfterStep(0);
        }
        while (_epochsCompleted < stopAt && !PatienceRunOut())
        {
            ct.ThrowIfCancellationRequested();
            if (StopsHere(drain, ct)) return new TrainEnd(Drained: true, lastSaved, bestSaved);
            var epoch = _epochsCompleted + 1;
            var metrics = TrainEpoch(epoch, ct);
            _history.Add(metrics);
            _epochsCompleted = epoch;
            _schedule.OnEpochEnd(metrics.ValLoss);
            metricsFile.WriteLine(JsonSerializer.Serialize(metrics, MetricsJson.Default.EpochMetrics));
            metricsFile.Flush();
            _observer.OnEpochEnd(metrics);

            var isBest = IsBetter(metrics);
            if (isBest)
            {
                _bestAccuracy = metrics.ValAccuracy;
                _bestEpoch = epoch;
            }
            var isLast = epoch == stopAt || PatienceRunOut();
            // The best checkpoint before the last one: a run interrupted between the two resumes from
            // the previous last checkpoint and trains this epoch again, so it writes this best again.
            // In the other order, a resumed run would start after this epoch, already counted as its
            // best, and never write its checkpoint: the best accuracy without its weights.
            if (writesCheckpoints && isBest && _spec.Checkpoint.KeepBest)
            {
                SaveCheckpoint(BestCheckpointPath);
                bestSaved = BestCheckpointPath;
                _observer.OnCheckpoint(bestSaved, CheckpointKind.Best);
            }
            if (writesCheckpoints && (epoch % _spec.Checkpoint.EveryEpochs == 0 || isLast))
            {
                SaveCheckpoint(LastCheckpointPath);
                lastSaved = LastCheckpointPath;
                _observer.OnCheckpoint(lastSaved, CheckpointKind.Last);
            }
        }
        return new TrainEnd(Drained: false, lastSaved, bestSaved);
    }

    /// <summary>
    /// Whether the run ends at this epoch boundary for a drain. Every rank of a data-parallel trial
    /// asks at every boundary (one small collective per epoch, also when nobody drains), so they
    /// all see the same answer: a drain on any rank stops them all here.
    /// </summary>
    private bool StopsHere(CancellationToken drain, CancellationToken ct)
    {
        var local = drain.IsCancellationRequested;
        return _dist is null ? local : _dist.Any(local, ct);
    }

    private EpochMetrics TrainEpoch(int epoch, CancellationToken ct)
    {
        _model.train();
        _mixed?.Train(true);
        _mixed?.BuffersToCompute();
        var skippedBefore = _mixed?.Scaler?.Skipped ?? 0;
        var batches = _trainLoader.BatchesPerEpoch;
        _observer.OnEpochStart(epoch, _spec.Epochs, batches);
        // Running sums stay on the device; they are read only at log intervals.
        using var lossSum = torch.zeros(1, dtype: ScalarType.Float64, device: _device);
        using var correctSum = torch.zeros(1, dtype: ScalarType.Int64, device: _device);
        long seen = 0;
        var lr = _schedule.At(_step);
        var clock = Stopwatch.StartNew();
        _trainLoader.TakeWaitTime();
        var b = 0;
        var lastStep = Stopwatch.GetTimestamp();
        foreach (var batch in _trainLoader.Epoch(epoch, ct))
        {
            lr = _schedule.At(_step);
            OptimizerFactory.SetLearningRate(_optimizer, lr);
            var count = batch.Count;
            seen += count;
            TrainStep(batch, lossSum, correctSum);
            _step++;
            b++;
            TrainingMetrics.StepCompleted(count, Stopwatch.GetElapsedTime(lastStep));
            lastStep = Stopwatch.GetTimestamp();
            if (b % LogEvery == 0 || b == batches)
            {
                TrainingMetrics.Throughput(seen / clock.Elapsed.TotalSeconds);
                _observer.OnBatches(new BatchProgress(epoch, b, batches, lossSum.ToDouble() / seen,
                    (double)correctSum.ToInt64() / seen, seen / clock.Elapsed.TotalSeconds, lr));
            }
        }
        var trainSeconds = clock.Elapsed.TotalSeconds;
        var wait = _trainLoader.TakeWaitTime().TotalSeconds;
        double lossTotal = lossSum.ToDouble(), correctTotal = correctSum.ToInt64(), seenTotal = seen;
        var (aggregationSeconds, aggregationBytes) = _dist?.TakeStats() ?? (double.NaN, double.NaN);
        if (_dist is not null)
        {
            // Train loss and accuracy over every rank's shard, not just this one's.
            var sums = _dist.Sum([lossTotal, correctTotal, seenTotal], ct);
            (lossTotal, correctTotal, seenTotal) = (sums[0], Math.Round(sums[1]), Math.Round(sums[2]));
        }
        var trainLoss = lossTotal / Math.Max(1, seenTotal);
        var trainAcc = correctTotal / Math.Max(1, seenTotal);
        var eval = Evaluate(ct);
        return new EpochMetrics(epoch, _step, lr, trainLoss, trainAcc, eval.Loss, eval.Top1, eval.Top5, eval.PerClassAccuracy,
            _data.Info.NumClasses <= 100 ? eval.ConfusionMatrix : null, clock.Elapsed.TotalSeconds, seenTotal / trainSeconds, wait,
            trainSeconds / Math.Max(1, b), aggregationSeconds, aggregationBytes, _pruner?.Sparsity ?? double.NaN,
            _mixed?.Scaler is { } scaler ? scaler.Skipped - skippedBefore : double.NaN, _mixed?.Scaler?.Scale ?? double.NaN, PluginMetrics(eval));
    }

    /// <summary>The plug-ins' extra metrics of an evaluation (NaN ones left out); null when the trial has none.</summary>
    private Dictionary<string, double>? PluginMetrics(EvalResult eval)
    {
        if (_metrics.Count == 0) return null;
        var result = new Sdk.EvaluationResult(_data.Info.Classes, eval.ConfusionMatrix, eval.Loss, eval.Count);
        return _metrics.Select(m => KeyValuePair.Create(m.Key, m.Value.Compute(result)))
            .Where(kv => double.IsFinite(kv.Value)).ToDictionary(StringComparer.Ordinal);
    }

    /// <summary>One optimiser step. Every tensor it makes dies with its scope.</summary>
    private void TrainStep(HostBatch batch, Tensor lossSum, Tensor correctSum)
    {
        using var scope = torch.NewDisposeScope();
        var (x, y) = _transform.Apply(batch, train: true);
        _trainLoader.Return(batch);
        Optimize(x, y, lossSum, correctSum);
        // The masks after the step: pruned weights that the step moved are zero again.
        _pruner?.AfterStep(_step + 1);
    }

    /// <summary>
    /// Forward, loss, backward, clip, step on a batch already on the device. Call inside a dispose
    /// scope; <paramref name="lossSum"/> and <paramref name="correctSum"/> (optional) accumulate on the device.
    /// </summary>
    public void Optimize(Tensor x, Tensor y, Tensor? lossSum = null, Tensor? correctSum = null)
    {
        var (logits, loss) = Optimize(_optimizer, x, y);
        using (torch.no_grad())
        {
            lossSum?.add_(loss.detach().to_type(ScalarType.Float64) * y.shape[0]);
            correctSum?.add_(logits.argmax(1).eq(y).sum());
        }
    }

    /// <summary>Forward, loss, backward, gradient averaging, clip and step with the given optimiser.</summary>
    private (Tensor Logits, Tensor Loss) Optimize(TorchSharp.Modules.OptimizerHelper optimizer, Tensor x, Tensor y)
    {
        optimizer.zero_grad();
        Tensor logits, loss;
        if (_mixed is { } mixed)
        {
            // The master's weights as they are now (stepped, pruned, resumed) into the compute copy.
            mixed.WeightsToCompute();
            logits = mixed.Forward(x);
            loss = _loss.Compute(logits, y);
            mixed.Backward(loss);
        }
        else
        {
            logits = _model.forward(x);
            loss = _loss.Compute(logits, y);
            loss.backward();
        }
        _dist?.AverageGradients(_trainable, _runToken);
        // fp16: gradients that overflowed skip the step (every rank alike: they were averaged first).
        if (_mixed is { } m && !m.StepAllowed()) return (logits, loss);
        if (_spec.GradClip > 0) nn.utils.clip_grad_norm_(_trainable, _spec.GradClip);
        optimizer.step();
        return (logits, loss);
    }

    /// <summary>Evaluates the current model on the validation split (each rank its shard, then combined).</summary>
    public EvalResult Evaluate(CancellationToken ct = default)
    {
        // The normalisation statistics that training updated live in the compute copy.
        _mixed?.BuffersToMaster();
        var local = Evaluator.Evaluate(_model, _valLoader, _transform, _data.Info.NumClasses, ct);
        return _dist is null ? local : _dist.Reduce(local, ct);
    }

    public void Dispose()
    {
        _trainLoader.Dispose();
        _valLoader.Dispose();
        _transform.Dispose();
        _loss.Dispose();
        _optimizer.Dispose();
        _pruner?.Dispose();
        _mixed?.Dispose();
        _model.Dispose();
    }

    private sealed class NullObserver : ITrainingObserver;
}

namespace Orchestrator.Trials;

/// <summary>
/// The names of the values a trial reports each epoch: keys of the worker's metric points, of
/// the coordinator's metric history and gauges, of metrics.jsonl and of `--json` output. One
/// place, so the worker that reports a value and everything that reads it agree.
/// </summary>
public static class MetricNames
{
    public const string TrainLoss = "train_loss";
    public const string TrainAccuracy = "train_accuracy";
    public const string ValLoss = "val_loss";
    public const string ValAccuracy = "val_accuracy";
    /// <summary>Top-5 validation accuracy.</summary>
    public const string ValTop5 = "val_top5";
    /// <summary>Learning rate at the end of the epoch.</summary>
    public const string LearningRate = "lr";
    /// <summary>Training throughput of the epoch (all ranks of a data-parallel trial together).</summary>
    public const string ImagesPerSecond = "images_per_second";
    public const string EpochSeconds = "epoch_seconds";
    /// <summary>Time the training loop waited for batches.</summary>
    public const string DataWaitSeconds = "data_wait_seconds";
    /// <summary>Mean time of one optimisation step.</summary>
    public const string StepSeconds = "step_seconds";
    /// <summary>Time spent averaging gradients across ranks (data-parallel trials).</summary>
    public const string AggregationSeconds = "aggregation_seconds";
    /// <summary>Gradient bytes sent per rank in the epoch (data-parallel trials).</summary>
    public const string AggregationBytes = "aggregation_bytes";
    /// <summary>Ranks the epoch ran on.</summary>
    public const string WorldSize = "world_size";
    /// <summary>Fraction of prunable weights that are zero (trials with <c>pruning</c>).</summary>
    public const string Sparsity = "sparsity";
    /// <summary>fp16 steps skipped in the epoch because their gradients overflowed (the loss scale then halves).</summary>
    public const string SkippedSteps = "skipped_steps";
    /// <summary>fp16's dynamic loss scale at the epoch's end.</summary>
    public const string LossScale = "loss_scale";

    /// <summary>The metrics a sweep may optimise (<c>objective.metric</c>), the default first.</summary>
    public static readonly IReadOnlyList<string> Objectives = [ValAccuracy, ValLoss, ValTop5, TrainLoss, TrainAccuracy];

    /// <summary>The objective of a sweep that names none.</summary>
    public const string DefaultObjective = ValAccuracy;
}

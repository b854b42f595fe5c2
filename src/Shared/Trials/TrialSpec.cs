namespace Orchestrator.Trials;

/// <summary>
/// Everything one training run needs: data, model, optimisation, augmentation, checkpoints.
/// It is the body of a trial file (<c>orch train trial.yaml</c>), the fixed part of a sweep, and
/// what a checkpoint records. Field names are the YAML names (camelCase).
/// </summary>
public sealed class TrialSpec
{
    public DataSpec Data { get; set; } = new();
    public ModelSpec Model { get; set; } = new();
    public int Epochs { get; set; } = 5;
    public int BatchSize { get; set; } = 128;
    /// <summary>Seeds weights, data order, augmentation and dropout.</summary>
    public int Seed { get; set; }
    public OptimizerSpec Optimizer { get; set; } = new();
    public ScheduleSpec Schedule { get; set; } = new();
    public LossSpec Loss { get; set; } = new();
    public AugmentSpec Augment { get; set; } = new();
    /// <summary>
    /// Arithmetic of the forward and backward passes: fp32, or bf16/fp16 with fp32 master weights,
    /// normalisation and loss (fp16 with dynamic loss scaling). Checkpoints are fp32 either way.
    /// </summary>
    public string Precision { get; set; } = "fp32";
    /// <summary>Clip the global gradient norm to this value; 0 turns clipping off.</summary>
    public double GradClip { get; set; }
    public CheckpointSpec Checkpoint { get; set; } = new();
    public PretrainedSpec? Pretrained { get; set; }
    /// <summary>Magnitude pruning during training; absent = a dense model.</summary>
    public PruningSpec? Pruning { get; set; }
    /// <summary>Stop before <see cref="Epochs"/> when checkpoint.bestMetric has not improved for a while (omit: train every epoch).</summary>
    public EarlyStoppingSpec? EarlyStopping { get; set; }
    /// <summary>Extra validation metrics from plug-ins, reported as val_&lt;name&gt; after each epoch (docs/plugins.md).</summary>
    public List<MetricPluginSpec>? Metrics { get; set; }

    /// <summary>
    /// A deep copy. Sections hold only values and strings (plus one list), so a member-wise copy
    /// per section is complete; it is ~100× cheaper than a YAML round trip, which matters when a
    /// sweep expands thousands of trials.
    /// </summary>
    public TrialSpec Clone()
    {
        var copy = (TrialSpec)MemberwiseClone();
        copy.Data = Data.Copy();
        copy.Model = Model.Copy();
        copy.Optimizer = Optimizer.Copy();
        copy.Schedule = Schedule.Copy();
        copy.Loss = Loss.Copy();
        copy.Augment = Augment.Copy();
        copy.Checkpoint = Checkpoint.Copy();
        copy.Pretrained = Pretrained?.Copy();
        copy.Pruning = Pruning?.Copy();
        copy.EarlyStopping = EarlyStopping?.Copy();
        copy.Metrics = Metrics?.Select(m => m.Copy()).ToList();
        return copy;
    }
}

public sealed class DataSpec
{
    internal DataSpec Copy()
    {
        var copy = (DataSpec)MemberwiseClone();
        copy.Args = Args is null ? null : new(Args, StringComparer.Ordinal);
        return copy;
    }

    /// <summary>fashion-mnist, mnist, cifar10, cifar100, imagefolder or synthetic; with <see cref="Plugin"/>, a name the plug-in exports.</summary>
    public string Name { get; set; } = "fashion-mnist";
    /// <summary>A plug-in assembly (.dll) whose exported data set <see cref="Name"/> is (docs/plugins.md); absent for built-in data sets.</summary>
    public string? Plugin { get; set; }
    /// <summary>Arguments for a plug-in's data set, as text (searchable as <c>data.args.NAME</c>).</summary>
    public Dictionary<string, string>? Args { get; set; }
    /// <summary>Where the files are; when empty the usual places are searched (see docs/data.md).</summary>
    public string? Dir { get; set; }
    /// <summary>Use only the first N training images (a seeded subset).</summary>
    public int? LimitTrain { get; set; }
    /// <summary>
    /// Threads that read, decode and augment training batches ahead of the model (1 by default;
    /// more for JPEG folders feeding a GPU). The batches are the same whatever the number.
    /// </summary>
    public int LoaderThreads { get; set; } = 1;
    /// <summary>Use only the first N validation images.</summary>
    public int? LimitTest { get; set; }
    /// <summary>Validate on a seeded hold-out fraction of train instead of the official test split.</summary>
    public double? Holdout { get; set; }
    /// <summary>Image side after loading, for imagefolder data (and the synthetic source).</summary>
    public int? ImageSize { get; set; }
    /// <summary>Download the data set when it is not found locally.</summary>
    public bool Download { get; set; } = true;
}

public sealed class ModelSpec
{
    internal ModelSpec Copy()
    {
        var copy = (ModelSpec)MemberwiseClone();
        copy.Args = Args is null ? null : new(Args, StringComparer.Ordinal);
        return copy;
    }

    /// <summary>simple-cnn, resnet18, resnet34, resnet50; with <see cref="Plugin"/>, a name the plug-in exports.</summary>
    public string Name { get; set; } = "simple-cnn";
    /// <summary>A plug-in assembly (.dll) whose exported model factory <see cref="Name"/> is (docs/plugins.md); absent for built-in models.</summary>
    public string? Plugin { get; set; }
    /// <summary>Arguments for the model factory, as text (searchable as <c>model.args.NAME</c>).</summary>
    public Dictionary<string, string>? Args { get; set; }
    /// <summary>Dropout probability before the classifier (0 = off).</summary>
    public double Dropout { get; set; }
    /// <summary>cifar (3×3 conv, no max-pool: for 28–64 px inputs) or imagenet (7×7/2 conv + max-pool). Default: by image size.</summary>
    public string? Stem { get; set; }
    /// <summary>simple-cnn: batch normalisation after each conv. Off gives a model whose output does not
    /// depend on the other images of the batch (data-parallel equivalence tests need that).</summary>
    public bool BatchNorm { get; set; } = true;
}

public sealed class OptimizerSpec
{
    internal OptimizerSpec Copy() => (OptimizerSpec)MemberwiseClone();

    /// <summary>sgd, adam, adamw, rmsprop.</summary>
    public string Name { get; set; } = "sgd";
    public double Lr { get; set; } = 0.05;
    public double Momentum { get; set; } = 0.9;
    public bool Nesterov { get; set; } = true;
    public double WeightDecay { get; set; } = 5e-4;
    public double Beta1 { get; set; } = 0.9;
    public double Beta2 { get; set; } = 0.999;
    public double Eps { get; set; } = 1e-8;
    /// <summary>RMSprop smoothing constant.</summary>
    public double Alpha { get; set; } = 0.99;
}

public sealed class ScheduleSpec
{
    internal ScheduleSpec Copy() => (ScheduleSpec)MemberwiseClone();

    /// <summary>constant, step, cosine, onecycle, plateau.</summary>
    public string Name { get; set; } = "cosine";
    /// <summary>Linear warm-up from 0 over this many epochs (cosine, step, constant).</summary>
    public double WarmupEpochs { get; set; }
    /// <summary>step: multiply the rate by <see cref="Gamma"/> every this many epochs.</summary>
    public int StepEpochs { get; set; } = 30;
    public double Gamma { get; set; } = 0.1;
    /// <summary>cosine: the rate at the end, as a fraction of the peak.</summary>
    public double MinLrFraction { get; set; }
    /// <summary>onecycle: fraction of training spent rising to the peak.</summary>
    public double PctStart { get; set; } = 0.25;
    /// <summary>plateau: epochs without improvement of the validation loss before the rate is cut.</summary>
    public int Patience { get; set; } = 2;
    /// <summary>plateau: the factor applied on a cut.</summary>
    public double Factor { get; set; } = 0.1;
}

public sealed class LossSpec
{
    internal LossSpec Copy()
    {
        var copy = (LossSpec)MemberwiseClone();
        copy.ClassWeights = ClassWeights is null ? null : [.. ClassWeights];
        return copy;
    }

    /// <summary>cross-entropy or focal.</summary>
    public string Name { get; set; } = "cross-entropy";
    public double LabelSmoothing { get; set; }
    /// <summary>Per-class weights, or the single word <c>balanced</c> (inverse class frequency of the training set).</summary>
    public List<string>? ClassWeights { get; set; }
    /// <summary>focal: the focusing parameter γ.</summary>
    public double FocalGamma { get; set; } = 2.0;
}

public sealed class AugmentSpec
{
    internal AugmentSpec Copy() => (AugmentSpec)MemberwiseClone();

    /// <summary>Random crop after zero padding of this many pixels (0 = off).</summary>
    public int CropPadding { get; set; }
    public bool Flip { get; set; }
    public double Brightness { get; set; }
    public double Contrast { get; set; }
    public double Saturation { get; set; }
    /// <summary>Random-resized crop to the training size (ImageNet style) instead of a padded crop.</summary>
    public bool RandomResizedCrop { get; set; }
    /// <summary>Network input side. Training images are cropped or resized to it; validation images are
    /// resized to <see cref="ResizeTo"/> and center-cropped to it. Default: the data set's image size.</summary>
    public int? CropSize { get; set; }
    /// <summary>Validation resize before the center crop (ImageNet: 256 for 224 crops).</summary>
    public int? ResizeTo { get; set; }
    /// <summary>Normalise with the data set's mean and standard deviation.</summary>
    public bool Normalize { get; set; } = true;
}

/// <summary>An extra validation metric a plug-in exports (an <c>IEvaluationMetric</c>).</summary>
public sealed class MetricPluginSpec
{
    internal MetricPluginSpec Copy() => (MetricPluginSpec)MemberwiseClone();

    /// <summary>The plug-in assembly (.dll).</summary>
    public string Plugin { get; set; } = "";
    /// <summary>The name it exports; reported as val_&lt;name&gt;.</summary>
    public string Name { get; set; } = "";
}

/// <summary>Per-trial patience: the run ends once checkpoint.bestMetric has gone <see cref="Patience"/> epochs without improving by more than <see cref="MinDelta"/>.</summary>
public sealed class EarlyStoppingSpec
{
    internal EarlyStoppingSpec Copy() => (EarlyStoppingSpec)MemberwiseClone();

    /// <summary>Epochs without improvement after which the run stops.</summary>
    public int Patience { get; set; } = 3;
    /// <summary>The smallest change that counts as an improvement (in the metric's units).</summary>
    public double MinDelta { get; set; }
}

public sealed class CheckpointSpec
{
    internal CheckpointSpec Copy() => (CheckpointSpec)MemberwiseClone();

    /// <summary>Folder for checkpoints; default runs/&lt;name&gt;.</summary>
    public string? Dir { get; set; }
    /// <summary>Save every N epochs (and always at the end).</summary>
    public int EveryEpochs { get; set; } = 1;
    /// <summary>Also keep best.ckpt: the epoch with the best <see cref="BestMetric"/>.</summary>
    public bool KeepBest { get; set; } = true;
    /// <summary>The metric that makes an epoch the best (a sweep sets its objective here): val_accuracy, val_loss, val_top5, train_loss or train_accuracy.</summary>
    public string BestMetric { get; set; } = MetricNames.DefaultObjective;
    /// <summary>maximize or minimize; default: minimize for *_loss, else maximize.</summary>
    public string? BestGoal { get; set; }

    /// <summary>Whether the best epoch is the one with the highest <see cref="BestMetric"/>.</summary>
    public bool MaximizesBest() => (BestGoal ?? (BestMetric.EndsWith("_loss", StringComparison.Ordinal) ? "minimize" : "maximize")) == "maximize";
}

public sealed class PretrainedSpec
{
    internal PretrainedSpec Copy() => (PretrainedSpec)MemberwiseClone();

    /// <summary>Weights file: a TorchSharp checkpoint or module file, a PyTorch .pt/.pth state dict, or .safetensors.</summary>
    public string Path { get; set; } = "";
    /// <summary>auto (by extension), torchsharp, pytorch or safetensors.</summary>
    public string Format { get; set; } = "auto";
    /// <summary>Train only the new classifier head.</summary>
    public bool FreezeBackbone { get; set; }
}

/// <summary>
/// Gradual magnitude pruning (Zhu &amp; Gupta, "To prune, or not to prune", 2017): the smallest
/// conv and linear weights (not biases, not batch norm) are set to zero, and kept at zero by a
/// mask applied after every optimiser step. The sparsity rises from <see cref="InitialSparsity"/>
/// to <see cref="Sparsity"/> on a cubic curve between <see cref="StartEpoch"/> and the end epoch,
/// with a mask update every <see cref="Frequency"/> steps; the epochs after that fine-tune with
/// the masks fixed.
/// </summary>
public sealed class PruningSpec
{
    internal PruningSpec Copy() => (PruningSpec)MemberwiseClone();

    /// <summary>The target: the fraction of prunable weights that are zero at the end (0 keeps all; a dense baseline).</summary>
    public double Sparsity { get; set; }
    /// <summary>The sparsity of the first mask update.</summary>
    public double InitialSparsity { get; set; }
    /// <summary>Epochs trained dense before pruning begins (0 = from the first step).</summary>
    public int StartEpoch { get; set; }
    /// <summary>The epoch by whose end the target is reached. Default: epochs − fineTuneEpochs.</summary>
    public int? EndEpoch { get; set; }
    /// <summary>Epochs trained with the final masks after the target is reached. Default: 1 (0 in a one-epoch run).</summary>
    public int? FineTuneEpochs { get; set; }
    /// <summary>Optimiser steps between mask updates.</summary>
    public int Frequency { get; set; } = 100;
    /// <summary>layer (each layer pruned to the sparsity) or global (one magnitude threshold over all prunable weights).</summary>
    public string Scope { get; set; } = "layer";

    /// <summary>The epoch by whose end the target sparsity is reached, in a run of <paramref name="epochs"/> epochs.</summary>
    public int EndEpochFor(int epochs) => EndEpoch ?? epochs - (FineTuneEpochs ?? (epochs > 1 ? 1 : 0));
}

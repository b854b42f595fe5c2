using System.CommandLine;
using Orchestrator.Data;
using Orchestrator.Trials;

namespace Orchestrator.Cli.Commands;

/// <summary>
/// The options that describe one trial (data set, model, optimiser, regularisation, data subset),
/// defined once for every command that builds a <see cref="TrialSpec"/> from a trial file plus the
/// command line: `orch train` and `orch lr-find`.
/// </summary>
internal sealed class TrialOptions
{
    public Argument<FileInfo?> TrialFile { get; } = new("trial.yaml")
    {
        Description = "Optional trial file (see docs/trial-spec.md); options given on the command line override it.",
        Arity = ArgumentArity.ZeroOrOne,
    };
    public Option<string?> Dataset { get; } = new("--dataset") { Description = $"Data set: {string.Join(", ", KnownNames.Datasets)}.", HelpName = "NAME" };
    public Option<string?> DataDir { get; } = CommonOptions.DataDir();
    public Option<string?> Model { get; } = new("--model") { Description = $"Model: {string.Join(", ", KnownNames.Models)}.", HelpName = "NAME" };
    public Option<int?> Epochs { get; } = new("--epochs") { Description = "Passes over the training set (default 5).", HelpName = "N" };
    public Option<int?> BatchSize { get; } = new("--batch-size") { Description = "Images per step (default 128).", HelpName = "N" };
    public Option<string?> Optimizer { get; } = new("--optimizer") { Description = $"Optimiser: {string.Join(", ", KnownNames.Optimizers)} (default sgd with Nesterov momentum 0.9).", HelpName = "NAME" };
    public Option<double?> Lr { get; } = new("--lr") { Description = "Peak learning rate (default 0.05).", HelpName = "RATE" };
    public Option<double?> WeightDecay { get; } = new("--weight-decay") { Description = "L2 weight decay (default 5e-4).", HelpName = "W" };
    public Option<string?> Schedule { get; } = new("--schedule") { Description = $"Learning-rate schedule: {string.Join(", ", KnownNames.Schedules)} (default cosine).", HelpName = "NAME" };
    public Option<double?> Dropout { get; } = new("--dropout") { Description = "Dropout before the classifier (default 0).", HelpName = "P" };
    public Option<double?> LabelSmoothing { get; } = new("--label-smoothing") { Description = "Cross-entropy label smoothing (default 0).", HelpName = "E" };
    public Option<bool> Augment { get; } = new("--augment") { Description = "Standard augmentation for the data set: random crop with padding and horizontal flip." };
    public Option<int?> Seed { get; } = new("--seed") { Description = "Seeds weights, data order, augmentation and dropout (default 0).", HelpName = "N" };
    public Option<int?> LimitTrain { get; } = new("--limit-train") { Description = "Train on a seeded subset of N images.", HelpName = "N" };
    public Option<int?> LimitTest { get; } = new("--limit-test") { Description = "Evaluate on a seeded subset of N images.", HelpName = "N" };
    public Option<double?> Holdout { get; } = new("--holdout") { Description = "Validate on this fraction of train, held out (default: the test split).", HelpName = "F" };
    public Option<string?> Pretrained { get; } = new("--pretrained") { Description = "Start from these weights (.ckpt, TorchSharp, PyTorch .pt or .safetensors); the classifier head is replaced when the class count differs.", HelpName = "FILE" };
    public Option<bool> FreezeBackbone { get; } = new("--freeze-backbone") { Description = "With --pretrained: train only the new classifier head." };
    public Option<bool> NoDownload { get; } = new("--no-download") { Description = "Fail instead of downloading a missing data set." };
    public Option<double?> Prune { get; } = new("--prune")
    {
        Description = "Gradual magnitude pruning to this fraction of zero conv and linear weights, e.g. 0.8 (the last epoch " +
                      "fine-tunes; the trial file's pruning section sets the schedule, see docs/training.md).",
        HelpName = "SPARSITY",
    };

    /// <summary>Whether the command trains on a schedule (`train`) or sets the rate itself (`lr-find`).</summary>
    private readonly bool _schedule;

    /// <param name="schedule">False for a command that drives the learning rate itself: --epochs, --lr and --schedule are left out.</param>
    public TrialOptions(bool schedule = true)
    {
        _schedule = schedule;
        // An unknown --option would otherwise be taken for the file name.
        TrialFile.Validators.Add(r =>
        {
            if (r.Tokens is [{ Value: var v }] && v.StartsWith('-')) r.AddError($"Unrecognized option '{v}'");
        });
    }

    /// <summary>Adds the trial-file argument and the options, in the order `--help` lists them.</summary>
    public void AddTo(Command command)
    {
        command.Add(TrialFile);
        var options = _schedule
            ? new Option[] { Dataset, DataDir, Model, Epochs, BatchSize, Optimizer, Lr, WeightDecay, Schedule, Dropout, LabelSmoothing, Augment, Seed, LimitTrain, LimitTest, Holdout, Pretrained, FreezeBackbone, Prune, NoDownload }
            : [Dataset, DataDir, Model, BatchSize, Optimizer, WeightDecay, Dropout, LabelSmoothing, Augment, Seed, LimitTrain, LimitTest, Holdout, Pretrained, FreezeBackbone, NoDownload];
        foreach (var o in options) command.Add(o);
    }

    /// <summary>The trial file (if any) with the options given on the command line applied over it, validated.</summary>
    public TrialSpec Build(ParseResult parse)
    {
        var spec = parse.GetValue(TrialFile) is { } file ? TrialSpecYaml.Load(file.FullName) : new TrialSpec();
        void Set<T>(Option<T> option, Action<T> apply)
        {
            if (parse.GetResult(option) is not null) apply(parse.GetValue(option)!);
        }
        Set(Dataset, v => spec.Data.Name = v!);
        Set(DataDir, v => spec.Data.Dir = v);
        Set(Model, v => spec.Model.Name = v!);
        Set(Epochs, v => spec.Epochs = v!.Value);
        Set(BatchSize, v => spec.BatchSize = v!.Value);
        Set(Optimizer, v => spec.Optimizer.Name = v!);
        Set(Lr, v => spec.Optimizer.Lr = v!.Value);
        Set(WeightDecay, v => spec.Optimizer.WeightDecay = v!.Value);
        Set(Schedule, v => spec.Schedule.Name = v!);
        Set(Dropout, v => spec.Model.Dropout = v!.Value);
        Set(LabelSmoothing, v => spec.Loss.LabelSmoothing = v!.Value);
        Set(Seed, v => spec.Seed = v!.Value);
        Set(LimitTrain, v => spec.Data.LimitTrain = v);
        Set(LimitTest, v => spec.Data.LimitTest = v);
        Set(Holdout, v => spec.Data.Holdout = v);
        if (parse.GetValue(Augment)) ApplyStandardAugmentation(spec);
        if (parse.GetValue(Pretrained) is { } weights)
            spec.Pretrained = new PretrainedSpec { Path = weights, FreezeBackbone = parse.GetValue(FreezeBackbone) };
        else if (parse.GetValue(FreezeBackbone))
            throw new Specs.SpecException("--freeze-backbone needs --pretrained FILE");
        if (parse.GetValue(NoDownload)) spec.Data.Download = false;
        if (_schedule) Set(Prune, v => (spec.Pruning ??= new PruningSpec()).Sparsity = v!.Value);
        TrialSpecYaml.Validate(spec);
        return spec;
    }

    /// <summary>The seed tutorial's augmentation: padded random crop (1/8 of the side) and horizontal flip.</summary>
    private static void ApplyStandardAugmentation(TrialSpec spec)
    {
        if (spec.Data.Name is "imagefolder")
        {
            spec.Augment.RandomResizedCrop = true;
            spec.Augment.Flip = true;
            return;
        }
        var side = DatasetCatalog.Find(spec.Data.Name)?.Shape.Height ?? 32;
        spec.Augment.CropPadding = Math.Max(1, side / 8);
        spec.Augment.Flip = true;
    }
}

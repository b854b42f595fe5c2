using System.Globalization;
using Orchestrator.Specs;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace Orchestrator.Trials;

/// <summary>Reads, validates and writes trial files.</summary>
public static class TrialSpecYaml
{
    private static readonly ISerializer Serializer = new SerializerBuilder()
        .WithNamingConvention(CamelCaseNamingConvention.Instance)
        .ConfigureDefaultValuesHandling(DefaultValuesHandling.OmitNull)
        .Build();

    public static string Serialize(TrialSpec spec) => Serializer.Serialize(spec);

    /// <summary>Parses and validates; throws <see cref="SpecException"/> with the field and line on error.</summary>
    public static TrialSpec Parse(string yaml, string? file)
    {
        var (spec, locations) = YamlSpec.Parse<TrialSpec>(yaml, file);
        Validate(spec, locations);
        return spec;
    }

    public static TrialSpec Load(string path)
    {
        var (spec, locations) = YamlSpec.Load<TrialSpec>(path);
        Validate(spec, locations);
        return spec;
    }

    private static bool In(IReadOnlyList<string> names, string? value) => value is not null && names.Contains(value);

    /// <summary>Checks every field; the first problem is thrown, located through <paramref name="at"/>.</summary>
    public static void Validate(TrialSpec s, SpecLocations? at = null)
    {
        at ??= new SpecLocations(null);
        void Check(bool ok, string field, string problem)
        {
            if (!ok) throw at.Error(field, problem);
        }

        // "schedule:" with nothing under it reads as null, not as the defaults (found by fuzzing).
        foreach (var (section, value) in new (string, object?)[]
                 { ("data", s.Data), ("model", s.Model), ("optimizer", s.Optimizer), ("schedule", s.Schedule), ("loss", s.Loss), ("augment", s.Augment), ("checkpoint", s.Checkpoint) })
            Check(value is not null, section, "is empty: give its fields, or leave the section out for its defaults");

        if (s.Data.Plugin is null)
            Check(In(KnownNames.Datasets, s.Data.Name), "data.name", $"unknown data set '{s.Data.Name}': {KnownNames.OneOf(KnownNames.Datasets)}");
        ValidatePlugin("data", s.Data.Plugin, s.Data.Name, s.Data.Args, Check);
        Check(s.Data.LimitTrain is null or > 0, "data.limitTrain", "must be > 0");
        Check(s.Data.LimitTest is null or > 0, "data.limitTest", "must be > 0");
        Check(s.Data.LoaderThreads is >= 1 and <= 64, "data.loaderThreads", "must be between 1 and 64");
        Check(s.Data.Holdout is null or (> 0 and < 1), "data.holdout", "must be a fraction between 0 and 1");
        Check(s.Data.ImageSize is null or (>= 8 and <= 1024), "data.imageSize", "must be between 8 and 1024");
        Check(s.Data.Name != "imagefolder" || s.Data.Plugin is not null || !string.IsNullOrEmpty(s.Data.Dir), "data.dir", "imagefolder data needs data.dir: a folder with one subfolder per class");

        if (s.Model.Plugin is null)
            Check(In(KnownNames.Models, s.Model.Name), "model.name", $"unknown model '{s.Model.Name}': {KnownNames.OneOf(KnownNames.Models)}");
        ValidatePlugin("model", s.Model.Plugin, s.Model.Name, s.Model.Args, Check);
        Check(s.Model.Dropout is >= 0 and < 1, "model.dropout", "must be in [0, 1)");
        Check(s.Model.Stem is null || In(KnownNames.Stems, s.Model.Stem), "model.stem", KnownNames.OneOf(KnownNames.Stems));

        Check(s.Epochs is > 0 and <= 100_000, "epochs", "must be between 1 and 100000");
        Check(s.BatchSize is > 0 and <= 65_536, "batchSize", "must be between 1 and 65536");
        Check(s.GradClip >= 0, "gradClip", "must be ≥ 0 (0 turns clipping off)");
        Check(In(KnownNames.Precisions, s.Precision), "precision", $"unknown precision '{s.Precision}': {KnownNames.OneOf(KnownNames.Precisions)}");

        var o = s.Optimizer;
        Check(In(KnownNames.Optimizers, o.Name), "optimizer.name", $"unknown optimizer '{o.Name}': {KnownNames.OneOf(KnownNames.Optimizers)}");
        Check(o.Lr is > 0 and < 100, "optimizer.lr", "must be > 0 (and below 100)");
        Check(o.Momentum is >= 0 and < 1, "optimizer.momentum", "must be in [0, 1)");
        Check(!o.Nesterov || o.Name != "sgd" || o.Momentum > 0, "optimizer.nesterov", "Nesterov momentum needs optimizer.momentum > 0");
        Check(o.WeightDecay >= 0, "optimizer.weightDecay", "must be ≥ 0");
        Check(o.Beta1 is >= 0 and < 1, "optimizer.beta1", "must be in [0, 1)");
        Check(o.Beta2 is >= 0 and < 1, "optimizer.beta2", "must be in [0, 1)");
        Check(o.Eps > 0, "optimizer.eps", "must be > 0");
        Check(o.Alpha is > 0 and < 1, "optimizer.alpha", "must be in (0, 1)");

        var sc = s.Schedule;
        Check(In(KnownNames.Schedules, sc.Name), "schedule.name", $"unknown schedule '{sc.Name}': {KnownNames.OneOf(KnownNames.Schedules)}");
        Check(sc.WarmupEpochs >= 0 && sc.WarmupEpochs < s.Epochs || sc.WarmupEpochs == 0, "schedule.warmupEpochs", "must be ≥ 0 and shorter than the run");
        Check(sc.StepEpochs > 0, "schedule.stepEpochs", "must be > 0");
        Check(sc.Gamma is > 0 and <= 1, "schedule.gamma", "must be in (0, 1]");
        Check(sc.MinLrFraction is >= 0 and < 1, "schedule.minLrFraction", "must be in [0, 1)");
        Check(sc.PctStart is > 0 and < 1, "schedule.pctStart", "must be in (0, 1)");
        Check(sc.Patience >= 0, "schedule.patience", "must be ≥ 0");
        Check(sc.Factor is > 0 and < 1, "schedule.factor", "must be in (0, 1)");

        var l = s.Loss;
        Check(In(KnownNames.Losses, l.Name), "loss.name", $"unknown loss '{l.Name}': {KnownNames.OneOf(KnownNames.Losses)}");
        Check(l.LabelSmoothing is >= 0 and < 1, "loss.labelSmoothing", "must be in [0, 1)");
        Check(l.FocalGamma >= 0, "loss.focalGamma", "must be ≥ 0");
        if (l.ClassWeights is { Count: > 0 } w && !(w.Count == 1 && w[0] == "balanced"))
        {
            for (var i = 0; i < w.Count; i++)
                Check(double.TryParse(w[i], NumberStyles.Float, CultureInfo.InvariantCulture, out var x) && x >= 0 && double.IsFinite(x),
                      $"loss.classWeights[{i}]", $"'{w[i]}' is not a weight ≥ 0 (or use the single word 'balanced')");
            // Known where the data set is built in: said when the file is checked (at submit), not by every trial.
            if (s.Data.Plugin is null && Orchestrator.Data.DatasetCatalog.Find(s.Data.Name) is { } known)
                Check(w.Count == known.NumClasses, "loss.classWeights",
                      $"{w.Count} weights given, one per class is needed: {known.Name} has {known.NumClasses} classes (or use the single word 'balanced')");
        }

        var a = s.Augment;
        Check(a.CropPadding is >= 0 and <= 64, "augment.cropPadding", "must be between 0 and 64");
        Check(a.Brightness is >= 0 and <= 1, "augment.brightness", "must be in [0, 1]");
        Check(a.Contrast is >= 0 and <= 1, "augment.contrast", "must be in [0, 1]");
        Check(a.Saturation is >= 0 and <= 1, "augment.saturation", "must be in [0, 1]");
        Check(a.CropSize is null or (>= 8 and <= 1024), "augment.cropSize", "must be between 8 and 1024");
        Check(a.ResizeTo is null || a.CropSize is null || a.ResizeTo >= a.CropSize, "augment.resizeTo", "must be ≥ augment.cropSize");

        Check(s.Checkpoint.EveryEpochs > 0, "checkpoint.everyEpochs", "must be > 0");
        Check(MetricNames.Objectives.Contains(s.Checkpoint.BestMetric), "checkpoint.bestMetric", "must be one of " + string.Join(", ", MetricNames.Objectives));
        Check(s.Checkpoint.BestGoal is null or "maximize" or "minimize", "checkpoint.bestGoal", "must be maximize or minimize");
        if (s.EarlyStopping is { } stop)
        {
            Check(stop.Patience >= 1, "earlyStopping.patience", "must be at least 1 (epochs without improvement before the run stops)");
            Check(stop.MinDelta >= 0 && double.IsFinite(stop.MinDelta), "earlyStopping.minDelta", "must be 0 or more");
        }
        if (s.Pretrained is { } p)
        {
            Check(!string.IsNullOrWhiteSpace(p.Path), "pretrained.path", "is required");
            Check(s.Model.Plugin is null, "pretrained", "transfer learning needs a built-in model: a plug-in's model has no known classifier head");
            Check(In(KnownNames.WeightFormats, p.Format), "pretrained.format", KnownNames.OneOf(KnownNames.WeightFormats));
        }
        if (s.Pruning is { } pr) ValidatePruning(pr, s.Epochs, Check);
        for (var i = 0; i < (s.Metrics?.Count ?? 0); i++)
        {
            var m = s.Metrics![i];
            var item = $"metrics[{i.ToString(CultureInfo.InvariantCulture)}]";
            Check(m is not null, item, "needs plugin and name");
            ValidatePlugin(item, m!.Plugin, m.Name, null, Check);
            Check(!MetricNames.Objectives.Contains("val_" + m.Name) && s.Metrics.Take(i).All(o => o?.Name != m.Name), item + ".name",
                $"val_{m.Name} is reported already: give each metric its own name");
        }
    }

    /// <summary>The plug-in fields of a <c>model</c> or <c>data</c> section; what the assembly holds is checked when it is loaded.</summary>
    private static void ValidatePlugin(string section, string? plugin, string name, Dictionary<string, string>? args, Action<bool, string, string> check)
    {
        if (plugin is null)
        {
            check(args is not { Count: > 0 }, section + ".args", $"arguments are for a plug-in's {section}: give {section}.plugin, or leave args out");
            return;
        }
        check(plugin.Trim().Length > 0, section + ".plugin", "is empty: give the path of the plug-in assembly (.dll)");
        check(plugin.EndsWith(".dll", StringComparison.OrdinalIgnoreCase), section + ".plugin", $"'{plugin}' is not a .NET assembly path (.dll)");
        check(IsPluginName(name), section + ".name", $"'{name}' is not a plug-in export name (letters, digits, '_', '-')");
        foreach (var (key, value) in args ?? [])
        {
            check(IsPluginName(key), $"{section}.args", $"'{key}' is not an argument name (letters, digits, '_', '-')");
            check(value is not null, $"{section}.args.{key}", "needs a value");
        }
    }

    /// <summary>Whether <paramref name="name"/> can name a plug-in export or argument.</summary>
    public static bool IsPluginName(string? name) =>
        !string.IsNullOrEmpty(name) && name.Length <= 100 && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-');

    private static void ValidatePruning(PruningSpec p, int epochs, Action<bool, string, string> check)
    {
        check(p.Sparsity is >= 0 and < 1, "pruning.sparsity", $"must be in [0, 1): the fraction of conv and linear weights set to zero (got {p.Sparsity:R})");
        check(p.InitialSparsity >= 0 && p.InitialSparsity <= p.Sparsity, "pruning.initialSparsity",
            $"must be between 0 and pruning.sparsity ({p.Sparsity:R})");
        check(p.Frequency > 0, "pruning.frequency", "must be ≥ 1 (optimizer steps between mask updates)");
        check(In(KnownNames.PruningScopes, p.Scope), "pruning.scope", KnownNames.OneOf(KnownNames.PruningScopes));
        check(p.StartEpoch >= 0 && p.StartEpoch < epochs, "pruning.startEpoch", $"must be ≥ 0 and less than epochs ({epochs})");
        check(p.EndEpoch is null || p.FineTuneEpochs is null, p.EndEpoch is null ? "pruning.fineTuneEpochs" : "pruning.endEpoch",
            "set pruning.endEpoch or pruning.fineTuneEpochs, not both (endEpoch = epochs − fineTuneEpochs)");
        check(p.FineTuneEpochs is null or >= 0, "pruning.fineTuneEpochs", "must be ≥ 0");
        var end = p.EndEpochFor(epochs);
        var field = p.EndEpoch is not null ? "pruning.endEpoch" : p.FineTuneEpochs is not null ? "pruning.fineTuneEpochs" : "pruning.startEpoch";
        check(end > p.StartEpoch && end <= epochs, field,
            $"pruning would end at epoch {end}, which must be after pruning.startEpoch ({p.StartEpoch}) and at most epochs ({epochs})");
    }
}

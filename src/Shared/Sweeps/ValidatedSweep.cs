using System.Globalization;
using System.Numerics;
using Orchestrator.Specs;
using Orchestrator.Sweeps.Stopping;
using Orchestrator.Sweeps.Tpe;
using Orchestrator.Trials;

namespace Orchestrator.Sweeps;

/// <summary>
/// A sweep file that passed every check: its settings with defaults filled in, the validated base
/// trial, and the search space. Everything a submit can reject is rejected by <see cref="Parse"/>,
/// with the file, line, column and field path (docs/sweep-spec.md).
/// </summary>
public sealed class ValidatedSweep
{
    private readonly TrialSpec _baseTrial;

    private ValidatedSweep(string specYaml, string? fileName, string name, TrialSpec baseTrial, SearchSpace space,
        string method, int maxTrials, int parallelTrials, int maxFailedTrials, int seed,
        string metric, bool maximize, double? target, int workers, int minWorkers, int gpusPerWorker, string aggregation, string wire)
    {
        Wire = wire;
        SpecYaml = specYaml;
        FileName = fileName;
        Name = name;
        _baseTrial = baseTrial;
        Space = space;
        Method = method;
        MaxTrials = maxTrials;
        ParallelTrials = parallelTrials;
        MaxFailedTrials = maxFailedTrials;
        Seed = seed;
        ObjectiveMetric = metric;
        Maximize = maximize;
        Target = target;
        Workers = workers;
        MinWorkers = minWorkers;
        GpusPerWorker = gpusPerWorker;
        Aggregation = aggregation;
    }

    // The same sweep with another base trial (orch extend --epochs); everything else is shared.
    private ValidatedSweep(ValidatedSweep other, TrialSpec baseTrial)
        : this(other.SpecYaml, other.FileName, other.Name, baseTrial, other.Space, other.Method, other.MaxTrials,
               other.ParallelTrials, other.MaxFailedTrials, other.Seed, other.ObjectiveMetric, other.Maximize, other.Target,
               other.Workers, other.MinWorkers, other.GpusPerWorker, other.Aggregation, other.Wire)
    {
        EarlyStopping = other.EarlyStopping;
        Tpe = other.Tpe;
        WarmStartFrom = other.WarmStartFrom;
    }

    /// <summary>The sweep's name (letters, digits, '.', '_', '-').</summary>
    public string Name { get; }
    /// <summary>The text as submitted.</summary>
    public string SpecYaml { get; }
    /// <summary>The file name used in error messages, if any.</summary>
    public string? FileName { get; }
    /// <summary>"grid", "random" or "tpe".</summary>
    public string Method { get; }
    /// <summary>The most trials the searcher creates; for a grid, min(search.maxTrials, grid size).</summary>
    public int MaxTrials { get; }
    /// <summary>How many trials may run at once.</summary>
    public int ParallelTrials { get; }
    /// <summary>Failed trials tolerated; one more ends the sweep as failed.</summary>
    public int MaxFailedTrials { get; }
    /// <summary>Seeds the searcher's generator (random sampling).</summary>
    public int Seed { get; }
    /// <summary>The reported metric to optimise (one of <see cref="SweepNames.Metrics"/>).</summary>
    public string ObjectiveMetric { get; }
    /// <summary>True to maximise the objective, false to minimise it.</summary>
    public bool Maximize { get; }
    /// <summary>Reaching this value ends the sweep; null to run every trial.</summary>
    public double? Target { get; }
    /// <summary>Workers per trial (data-parallel ranks).</summary>
    public int Workers { get; }
    /// <summary>The fewest workers a trial may start or continue with.</summary>
    public int MinWorkers { get; }
    /// <summary>GPUs each worker of a trial needs (0: CPU is fine).</summary>
    public int GpusPerWorker { get; }
    /// <summary>How the ranks of a trial average gradients: "ring" (default) or "coordinator".</summary>
    public string Aggregation { get; }

    /// <summary>Gradient number format on the wire (resources.wire): fp32, or bf16 (half the bytes, either aggregation).</summary>
    public string Wire { get; }
    /// <summary>The searched and fixed parameters.</summary>
    public SearchSpace Space { get; }

    /// <summary>The early-stopping rule (search.earlyStopping); null when every trial trains all its epochs.</summary>
    public EarlyStoppingSettings? EarlyStopping { get; private init; }

    /// <summary>TPE's settings (search.tpe, defaults filled in) when the method is tpe; null otherwise.</summary>
    public TpeSettings? Tpe { get; private init; }

    /// <summary>The sweep whose results a model-based method starts from (search.warmStartFrom); null for none.</summary>
    public string? WarmStartFrom { get; private init; }

    /// <summary>data + model + trial merged, with the fixed parameters applied; validated. A copy each time.</summary>
    public TrialSpec BaseTrial => _baseTrial.Clone();

    /// <summary>
    /// Parses and validates a sweep file; throws <see cref="SpecException"/> ("file:line:col: field: problem") on the first problem.
    /// </summary>
    public static ValidatedSweep Parse(string yaml, string? fileName, SweepLimits limits)
    {
        ArgumentNullException.ThrowIfNull(yaml);
        ArgumentNullException.ThrowIfNull(limits);
        var (file, at) = YamlSpec.Parse<SweepFile>(yaml, fileName);
        return Build(yaml, file, at, limits);
    }

    /// <summary>
    /// The complete trial for a sample: the base trial with <paramref name="parameters"/> (dotted
    /// path → invariant-culture text) applied, validated. Throws <see cref="SpecException"/> naming the
    /// field where a path is unknown, a value unreadable, or the combination invalid.
    /// </summary>
    public TrialSpec TrialFor(IReadOnlyDictionary<string, string> parameters)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        var trial = _baseTrial.Clone();
        foreach (var (path, text) in parameters)
        {
            if (!TrialFields.TryGet(path, out var field, out var problem)) throw new SpecException(null, null, path, problem);
            if (!field.TryNormalize(text, out var canonical, out problem)) throw new SpecException(null, null, path, problem);
            field.Set(trial, canonical);
        }
        TrialSpecYaml.Validate(trial);
        return trial;
    }

    /// <summary>The epochs every trial trains (trial.epochs, after any <see cref="WithEpochs"/>).</summary>
    public int Epochs => _baseTrial.Epochs;

    /// <summary>
    /// The sweep with every trial training <paramref name="epochs"/> epochs (orch extend --epochs):
    /// the early-stopping rule's maxEpochs follows, and the rungs that now fit below it are added
    /// after the existing ones, which stay as they are. The spec text (and so the searcher's
    /// fingerprint) does not change: the coordinator stores the override beside it.
    /// </summary>
    /// <exception cref="SpecException">The epochs are searched, not more than now, or make the trial invalid.</exception>
    public ValidatedSweep WithEpochs(int epochs)
    {
        if (epochs == Epochs) return this;
        if (Space.Searched.Any(p => p.Path == "epochs"))
            throw new SpecException(FileName, null, "parameters.epochs", "is searched, so the trials have no common epoch count to raise");
        if (epochs < Epochs)
            throw new SpecException(FileName, null, "trial.epochs", $"{epochs} is not more than the trials' epochs now ({Epochs}): extend can only add epochs");
        var trial = _baseTrial.Clone();
        trial.Epochs = epochs;
        TrialSpecYaml.Validate(trial);
        var rule = EarlyStopping;
        if (rule is { Method: not EarlyStoppingSettings.Median })
        {
            var added = EarlyStoppingSettings.RungsBelow(rule.MinEpochs, rule.ReductionFactor, epochs)
                        - EarlyStoppingSettings.RungsBelow(rule.MinEpochs, rule.ReductionFactor, rule.MaxEpochs);
            rule = rule with { MaxEpochs = epochs, Rungs = rule.Rungs + added };
        }
        else if (rule is not null) rule = rule with { MaxEpochs = epochs };
        return new ValidatedSweep(this, trial) { EarlyStopping = rule };
    }

    /// <summary>Whether <paramref name="candidate"/> beats <paramref name="incumbent"/> for the goal (anything beats none; NaN beats nothing).</summary>
    public bool IsBetter(double candidate, double? incumbent) =>
        !double.IsNaN(candidate) && (incumbent is not { } best || (Maximize ? candidate > best : candidate < best));

    /// <summary>Whether <paramref name="objective"/> reaches <see cref="Target"/> (false when there is none).</summary>
    public bool ReachesTarget(double objective) =>
        Target is { } t && !double.IsNaN(objective) && (Maximize ? objective >= t : objective <= t);

    private static ValidatedSweep Build(string yaml, SweepFile file, SpecLocations at, SweepLimits limits)
    {
        void Check(bool ok, string field, string problem)
        {
            if (!ok) throw at.Error(field, problem);
        }

        var name = file.Name?.Trim() ?? "";
        Check(name.Length > 0, "name", "is required (it names the sweep in listings and its run folder)");
        Check(name.Length <= 100 && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'), "name",
              $"'{name}' may use only letters, digits, '.', '_' and '-' (at most 100)");

        // data and model have their own top-level sections; under trial they would be ambiguous.
        foreach (var section in new[] { "data", "model" })
            Check(!at.Contains("trial." + section), "trial." + section, $"'{section}' goes at the top level of a sweep file, not under trial");

        var trial = file.Trial ?? new TrialSpec();
        trial.Data = file.Data ?? new DataSpec();
        trial.Model = file.Model ?? new ModelSpec();
        CheckTrial(trial, at, f => f.StartsWith("data.", StringComparison.Ordinal) || f.StartsWith("model.", StringComparison.Ordinal) ? f : "trial." + f);

        var search = file.Search ?? new SearchSection();
        var method = search.Method ?? "random";
        Check(SweepNames.Methods.Contains(method), "search.method", $"unknown method '{method}': {KnownNames.OneOf(SweepNames.Methods)}");
        var maxTrials = search.MaxTrials ?? 10;
        Check(maxTrials >= 1, "search.maxTrials", "must be ≥ 1");
        Check(maxTrials <= limits.MaxTrials, "search.maxTrials", $"{maxTrials} is more than this coordinator allows ({limits.MaxTrials})");
        var parallel = search.ParallelTrials ?? 1;
        Check(parallel >= 1, "search.parallelTrials", "must be ≥ 1");
        var maxFailed = search.MaxFailedTrials ?? 3;
        Check(maxFailed >= 0, "search.maxFailedTrials", "must be ≥ 0");

        var objective = file.Objective ?? new ObjectiveSection();
        var metric = objective.Metric ?? MetricNames.DefaultObjective;
        Check(SweepNames.Metrics.Contains(metric), "objective.metric", $"unknown metric '{metric}': {KnownNames.OneOf(SweepNames.Metrics)}");
        // A loss is minimised unless the file says otherwise; maximising it by default would be a silent mistake.
        var goal = objective.Goal ?? (metric.EndsWith("_loss", StringComparison.Ordinal) ? "minimize" : "maximize");
        Check(SweepNames.Goals.Contains(goal), "objective.goal", $"unknown goal '{goal}': {KnownNames.OneOf(SweepNames.Goals)}");
        Check(objective.Target is null || double.IsFinite(objective.Target.Value), "objective.target", "must be a finite number");

        var resources = file.Resources ?? new ResourcesSection();
        var workers = resources.Workers ?? 1;
        Check(workers >= 1, "resources.workers", "must be ≥ 1");
        Check(workers <= limits.MaxWorkersPerTrial, "resources.workers",
              $"{workers} workers per trial is more than this cluster allows ({limits.MaxWorkersPerTrial})");
        var minWorkers = resources.MinWorkers ?? workers;
        Check(minWorkers >= 1, "resources.minWorkers", "must be ≥ 1");
        Check(minWorkers <= workers, "resources.minWorkers", $"must be ≤ resources.workers ({workers})");
        var gpus = resources.GpusPerWorker ?? 0;
        Check(gpus >= 0, "resources.gpusPerWorker", "must be ≥ 0");
        var aggregation = resources.Aggregation ?? SweepNames.Aggregations[0];
        Check(SweepNames.Aggregations.Contains(aggregation), "resources.aggregation",
              $"unknown aggregation '{aggregation}': {KnownNames.OneOf(SweepNames.Aggregations)}");
        var wire = resources.Wire ?? SweepNames.WireFormats[0];
        Check(SweepNames.WireFormats.Contains(wire), "resources.wire", $"unknown wire format '{wire}': {KnownNames.OneOf(SweepNames.WireFormats)}");

        var parameters = ParameterParser.ParseAll(file.Parameters, at);
        foreach (var p in parameters.Where(p => p.Kind == ParameterKind.Fixed))
        {
            // Fixed values become part of the base trial, each checked as it is applied.
            p.Field.Set(trial, p.Values[0]);
            CheckValue(trial, at, p, "parameters." + p.Path, p.Values[0], undo: null);
        }
        foreach (var p in parameters.Where(p => p.Kind != ParameterKind.Fixed))
            CheckSearchedValues(trial, at, p);

        var space = new SearchSpace(parameters);
        if (method == "grid")
        {
            foreach (var p in space.Searched)
                Check(p.GridCount is not null, "parameters." + p.Path, $"grid search needs values or a step for parameters.{p.Path}");
            var size = space.GridSize!.Value;
            Check(size <= limits.MaxGridPoints, "parameters",
                  $"the grid has {Count(size)} points, more than this coordinator allows ({limits.MaxGridPoints}): narrow it or use random search");
            Check(size <= maxTrials, "search.maxTrials",
                  $"the grid has {Count(size)} points but search.maxTrials is {maxTrials}: raise search.maxTrials or narrow the grid");
            maxTrials = (int)BigInteger.Min(maxTrials, size);
        }

        var tpe = TpeParser.Parse(method, search.Tpe, space, maxTrials, at);
        var earlyStopping = EarlyStoppingParser.Parse(search.EarlyStopping, trial, parameters, at);
        var warmStart = search.WarmStartFrom?.Trim();
        if (warmStart is not null)
        {
            Check(warmStart.Length > 0, "search.warmStartFrom", "names the earlier sweep (sw-…) whose results to start from");
            Check(method == "tpe", "search.warmStartFrom", $"only search.method tpe learns from earlier results, not {method}");
        }

        // One meaning of "best": each trial keeps best.ckpt by the sweep's objective, as the sweep ranks trials.
        trial.Checkpoint.BestMetric = metric;
        trial.Checkpoint.BestGoal = goal;
        return new ValidatedSweep(yaml, at.File, name, trial, space, method, maxTrials, parallel, maxFailed,
            search.Seed ?? 0, metric, goal == "maximize", objective.Target, workers, minWorkers, gpus, aggregation, wire)
        {
            EarlyStopping = earlyStopping,
            Tpe = tpe,
            WarmStartFrom = warmStart,
        };
    }

    private static string Count(BigInteger n) => n.ToString("N0", CultureInfo.InvariantCulture);

    /// <summary>Checks a searched parameter's values on the base trial: every choice, or both bounds of a range.</summary>
    private static void CheckSearchedValues(TrialSpec trial, SpecLocations at, SweepParameter p)
    {
        var field = "parameters." + p.Path;
        var candidates = p.Kind == ParameterKind.Categorical
            ? p.Values.Select((v, i) => (Path: $"{field}.values[{i.ToString(CultureInfo.InvariantCulture)}]", Value: v))
            : [(field + ".min", p.FormatBound(p.Min)), (field + ".max", p.FormatBound(p.Max))];
        foreach (var (path, value) in candidates)
            CheckValue(trial, at, p, path, value, p.Field.SetTemporarily(trial, value));
    }

    private static void CheckValue(TrialSpec trial, SpecLocations at, SweepParameter p, string errorPath, string value, Action? undo)
    {
        try
        {
            // The error points at the parameter's line; the trial field is named too when the value broke another one.
            CheckTrial(trial, at, _ => errorPath,
                       (field, problem) => field == p.Path ? problem : $"{value} makes the trial invalid: {field}: {problem}");
        }
        finally
        {
            undo?.Invoke();
        }
    }

    /// <summary>Runs the trial validation and restates its error at the sweep file's field and line.</summary>
    private static void CheckTrial(TrialSpec trial, SpecLocations at, Func<string, string> locate,
        Func<string, string, string>? problemFor = null)
    {
        try
        {
            TrialSpecYaml.Validate(trial);
        }
        catch (SpecException e) when (e.Field is not null && e.Problem is not null)
        {
            var path = locate(e.Field);
            throw at.Error(path, problemFor?.Invoke(e.Field, e.Problem) ?? e.Problem);
        }
    }
}

using System.Text.Json;
using System.Text.Json.Serialization;

namespace Orchestrator.Sweeps.Tpe;

/// <summary>
/// Tree-structured Parzen estimators (Bergstra et al., 2011): after a few random start-up trials,
/// each new trial is drawn where the good results are dense and the bad ones sparse. It keeps
/// <see cref="ValidatedSweep.ParallelTrials"/> trials outstanding and creates one more as each
/// exits, so that every new trial sees the results so far.
/// </summary>
/// <remarks>
/// <para>
/// A result is a trial that completed or was stopped early, with the best objective it reported.
/// A stopped trial counts with the best it reached before it was stopped: it trained fewer epochs,
/// so its result is pessimistic, which is right for a trial the stopping rule judged hopeless. A
/// trial that exited without a finite objective (it diverged) ranks below every other result.
/// Failed trials teach nothing. A warm start's results (<see cref="SearchContext.Prior"/>) come
/// first and count toward the start-up trials.
/// </para>
/// <para>
/// The results are split into the best ⌈gamma·n⌉ (at least one) and the rest; for each searched
/// parameter independently, <see cref="TpeSettings.Candidates"/> values are drawn from the good
/// results' density l and the one with the highest l(x)/g(x) is taken. Every draw comes from
/// <see cref="SearchContext.Random"/>, so the same seed and the same events give the same trials,
/// and the state holds the results themselves (the model is refitted from them for each trial),
/// so a restored searcher continues exactly. The densities use Math.Exp and Math.Log; a platform
/// whose last bits differ could, in a near tie between candidates, pick another one: exact
/// equality holds for the same build and platform (a restarted coordinator).
/// </para>
/// </remarks>
public sealed class TpeSearch : ISearchMethod
{
    private TpeState _state = new();

    /// <inheritdoc />
    public string Name => "tpe";

    /// <inheritdoc />
    public IReadOnlyList<SearchAction> InitialTrials(SearchContext context) => Fill(context);

    /// <inheritdoc />
    public IReadOnlyList<SearchAction> OnValidation(SearchContext context, int trialIndex, int epoch, double objective)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (Running(trialIndex) is { } trial && !double.IsNaN(objective))
        {
            if (context.Sweep.IsBetter(objective, trial.Best)) trial.Best = objective;
            trial.Epochs = epoch;
        }
        return [];
    }

    /// <inheritdoc />
    public IReadOnlyList<SearchAction> OnTrialExited(SearchContext context, int trialIndex, TrialExit exit)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (Running(trialIndex) is { } trial)
        {
            _state.Running.Remove(trial);
            trial.Exit = exit;
            if (exit != TrialExit.Failed) _state.Results.Add(trial);
        }
        return Fill(context);
    }

    /// <inheritdoc />
    public IReadOnlyList<SearchAction> Extend(SearchContext context, int more) => Fill(context);

    /// <inheritdoc />
    public bool LearnsFromReports => true;

    /// <inheritdoc />
    public double Progress(SearchContext context) => SearchProgress.ExitedFraction(context);

    /// <inheritdoc />
    public JsonElement Snapshot() => JsonSerializer.SerializeToElement(_state, TpeJsonContext.Default.TpeState);

    /// <inheritdoc />
    public void Restore(JsonElement state) =>
        _state = state.Deserialize(TpeJsonContext.Default.TpeState) ?? throw new ArgumentException("the tpe state is empty", nameof(state));

    /// <summary>
    /// The results a new trial learns from, warm start first, then trials in the order they
    /// exited; a result without a finite objective has NaN.
    /// </summary>
    public IReadOnlyList<SearchObservation> Observations(SearchContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return [
            .. context.Prior.Where(p => p.Exit != TrialExit.Failed),
            .. _state.Results.Select(r => new SearchObservation(r.Parameters, r.Best ?? double.NaN, r.Epochs, r.Exit ?? TrialExit.Completed)),
        ];
    }

    /// <summary>
    /// Splits <paramref name="observations"/> into the best ⌈gamma·n⌉ (at least one; ties keep
    /// their order) and the rest, for the goal; NaN objectives rank last.
    /// </summary>
    public static (IReadOnlyList<SearchObservation> Good, IReadOnlyList<SearchObservation> Bad) Split(
        IReadOnlyList<SearchObservation> observations, double gamma, bool maximize)
    {
        ArgumentNullException.ThrowIfNull(observations);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(gamma);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(gamma, 1);
        // The small slack keeps 0.1 × 30 at 3 rather than ceil(3.0000000000000004) = 4.
        var good = Math.Clamp((int)Math.Ceiling(gamma * observations.Count - 1e-9), 1, Math.Max(1, observations.Count));
        // OrderBy is stable: equal objectives keep their order (warm start, then exit order).
        var ranked = observations.OrderByDescending(o => double.IsNaN(o.Objective) ? double.NegativeInfinity : maximize ? o.Objective : -o.Objective).ToList();
        return (ranked[..Math.Min(good, ranked.Count)], ranked[Math.Min(good, ranked.Count)..]);
    }

    private TpeTrial? Running(int index) => _state.Running.Find(t => t.Index == index);

    private List<SearchAction> Fill(SearchContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var settings = context.Sweep.Tpe ?? throw new InvalidOperationException($"sweep {context.Sweep.Name} has no tpe settings (search.method is {context.Sweep.Method})");
        var actions = new List<SearchAction>();
        while (context.TrialsCreated < context.MaxTrials && context.TrialsCreated - context.TrialsExited < context.Sweep.ParallelTrials)
        {
            var parameters = Next(context, settings);
            var trial = context.NewTrial(parameters);
            _state.Running.Add(new TpeTrial { Index = trial.Index, Parameters = new Dictionary<string, string>(parameters, StringComparer.Ordinal) });
            actions.Add(trial);
        }
        return actions;
    }

    private IReadOnlyDictionary<string, string> Next(SearchContext context, TpeSettings settings)
    {
        var space = context.Sweep.Space;
        var observations = Observations(context);
        var startup = context.TrialsCreated + context.Prior.Count(p => p.Exit != TrialExit.Failed) < settings.StartupTrials;
        if (startup || observations.Count == 0) return space.Sample(context.Random);

        var (good, bad) = Split(observations, settings.Gamma, context.Sweep.Maximize);
        var point = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var p in space.Searched)
        {
            point[p.Path] = ParameterModel.For(p).Suggest(Values(good, p.Path), Values(bad, p.Path), settings.Candidates, context.Random);
        }
        return point;
    }

    private static IEnumerable<string> Values(IEnumerable<SearchObservation> observations, string path) =>
        observations.Select(o => o.Parameters.TryGetValue(path, out var v) ? v : null).OfType<string>();
}

/// <summary>TPE's persisted state: the trials running and the results so far (the model is refitted from them).</summary>
internal sealed class TpeState
{
    /// <summary>Created and not yet exited, in creation order.</summary>
    public List<TpeTrial> Running { get; set; } = [];
    /// <summary>Completed and stopped trials, in exit order.</summary>
    public List<TpeTrial> Results { get; set; } = [];
}

/// <summary>One trial as TPE knows it.</summary>
internal sealed class TpeTrial
{
    public int Index { get; set; }
    public Dictionary<string, string> Parameters { get; set; } = [];
    /// <summary>The best finite objective reported; null for none.</summary>
    public double? Best { get; set; }
    /// <summary>The last epoch reported.</summary>
    public int Epochs { get; set; }
    public TrialExit? Exit { get; set; }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, UseStringEnumConverter = true)]
[JsonSerializable(typeof(TpeState))]
internal sealed partial class TpeJsonContext : JsonSerializerContext;

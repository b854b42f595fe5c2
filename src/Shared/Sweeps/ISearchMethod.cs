using System.Text.Json;

namespace Orchestrator.Sweeps;

/// <summary>
/// A search method: which trials to create and which to stop, given what has happened. Pure and
/// synchronous: events in, actions out; no I/O, no clock, no reference to the scheduler or the
/// store. Randomness comes only from <see cref="SearchContext.Random"/>, whose state the
/// <see cref="Searcher"/> persists, so a restored sweep continues exactly as it would have.
/// </summary>
/// <remarks>
/// The <see cref="Searcher"/> wrapper handles what every method shares (idempotency, duplicate and
/// stale reports, the objective's target, the failed-trial budget, the end of the search), so a
/// method only decides which trials to create. Grid and random create all their trials at once; a
/// model-based method (TPE) creates a few and one more as each exits. Stopping trials early is the
/// sweep's <see cref="Stopping.IStoppingRule"/>'s, composable with any method.
/// </remarks>
public interface ISearchMethod
{
    /// <summary>The method's name in sweep files ("grid", "random", "tpe").</summary>
    string Name { get; }

    /// <summary>The trials to create when the search starts (through <see cref="SearchContext.NewTrial"/>).</summary>
    IReadOnlyList<SearchAction> InitialTrials(SearchContext context);

    /// <summary>Trial <paramref name="trialIndex"/> reported the objective after <paramref name="epoch"/>; each (trial, epoch) arrives once, in order.</summary>
    IReadOnlyList<SearchAction> OnValidation(SearchContext context, int trialIndex, int epoch, double objective);

    /// <summary>Trial <paramref name="trialIndex"/> ended (completed, stopped early or failed); arrives once per trial.</summary>
    IReadOnlyList<SearchAction> OnTrialExited(SearchContext context, int trialIndex, TrialExit exit);

    /// <summary>
    /// The budget was raised (<see cref="SearchContext.MaxTrials"/> grew by <paramref name="more"/>,
    /// orch extend): the trials to create now, if any. Throws <see cref="InvalidOperationException"/>
    /// when the method cannot use more trials (a grid is covered once).
    /// </summary>
    IReadOnlyList<SearchAction> Extend(SearchContext context, int more);

    /// <summary>
    /// True when <see cref="OnValidation"/> changes the method's state (a model of the results), so
    /// that the coordinator saves the searcher after every report rather than only on a new best.
    /// </summary>
    bool LearnsFromReports { get; }

    /// <summary>How far the search is, 0..1.</summary>
    double Progress(SearchContext context);

    /// <summary>The method's own state, for the searcher's snapshot.</summary>
    JsonElement Snapshot();

    /// <summary>Takes back a state made by <see cref="Snapshot"/>.</summary>
    void Restore(JsonElement state);
}

/// <summary>What a search method may see and use: the sweep, the searcher's generator and its trial counters.</summary>
public sealed class SearchContext
{
    private readonly Func<IReadOnlyDictionary<string, string>, CreateTrial> _newTrial;
    private readonly Func<int> _created;
    private readonly Func<int> _exited;
    private readonly Func<int> _maxTrials;

    internal SearchContext(ValidatedSweep sweep, SplitMix64 random, Func<IReadOnlyDictionary<string, string>, CreateTrial> newTrial,
        Func<int> created, Func<int> exited, Func<int> maxTrials, IReadOnlyList<SearchObservation> prior)
    {
        _maxTrials = maxTrials;
        Sweep = sweep;
        Prior = prior;
        Random = random;
        _newTrial = newTrial;
        _exited = exited;
        _created = created;
    }

    /// <summary>The validated sweep (settings and search space).</summary>
    public ValidatedSweep Sweep { get; }

    /// <summary>The seeded generator; its state is saved with the searcher.</summary>
    public SplitMix64 Random { get; }

    /// <summary>Results of an earlier sweep over the same space (search.warmStartFrom), oldest first; empty without one.</summary>
    public IReadOnlyList<SearchObservation> Prior { get; }

    /// <summary>The trial budget: the sweep's maxTrials plus what orch extend added.</summary>
    public int MaxTrials => _maxTrials();

    /// <summary>Trials created so far.</summary>
    public int TrialsCreated => _created();

    /// <summary>Trials that have exited so far.</summary>
    public int TrialsExited => _exited();

    /// <summary>A <see cref="CreateTrial"/> with the next index, recorded by the searcher.</summary>
    public CreateTrial NewTrial(IReadOnlyDictionary<string, string> parameters) => _newTrial(parameters);
}

/// <summary>How a trial ended, as a search method sees it.</summary>
public enum TrialExit
{
    /// <summary>Trained all its epochs.</summary>
    Completed,
    /// <summary>Stopped early (by the sweep's stopping rule or a user): its last reported objective is a result, at fewer epochs.</summary>
    Stopped,
    /// <summary>Failed: no result to learn from.</summary>
    Failed,
}

/// <summary>
/// One finished trial of an earlier sweep, for a warm start: its parameters (dotted path →
/// invariant-culture text), the objective it reached (its best report) and how many epochs it trained.
/// </summary>
public sealed record SearchObservation(IReadOnlyDictionary<string, string> Parameters, double Objective, int Epochs, TrialExit Exit);

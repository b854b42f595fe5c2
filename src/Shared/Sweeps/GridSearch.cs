using System.Text.Json;

namespace Orchestrator.Sweeps;

/// <summary>
/// Every point of the cartesian product, once, in a fixed order: trial i is grid point i, the first
/// parameter of the file varying slowest (<see cref="SearchSpace.GridPoint"/>).
/// </summary>
public sealed class GridSearch : ISearchMethod
{
    /// <inheritdoc />
    public string Name => "grid";

    /// <inheritdoc />
    public IReadOnlyList<SearchAction> InitialTrials(SearchContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var space = context.Sweep.Space;
        return [.. Enumerable.Range(0, context.MaxTrials).Select(i => context.NewTrial(space.GridPoint(i)))];
    }

    /// <inheritdoc />
    public IReadOnlyList<SearchAction> OnValidation(SearchContext context, int trialIndex, int epoch, double objective) => [];

    /// <inheritdoc />
    public IReadOnlyList<SearchAction> OnTrialExited(SearchContext context, int trialIndex, TrialExit exit) => [];

    /// <inheritdoc />
    public IReadOnlyList<SearchAction> Extend(SearchContext context, int more) =>
        throw new InvalidOperationException("a grid search covers its grid once; to search further, submit a sweep with more values");

    /// <inheritdoc />
    public bool LearnsFromReports => false;

    /// <inheritdoc />
    public double Progress(SearchContext context) => SearchProgress.ExitedFraction(context);

    /// <inheritdoc />
    public JsonElement Snapshot() => SearchProgress.NoState;

    /// <inheritdoc />
    public void Restore(JsonElement state) { }
}

internal static class SearchProgress
{
    public static readonly JsonElement NoState = JsonDocument.Parse("{}").RootElement.Clone();

    public static double ExitedFraction(SearchContext context) =>
        context.MaxTrials == 0 ? 1 : Math.Clamp((double)context.TrialsExited / context.MaxTrials, 0, 1);
}

using System.Text.Json;

namespace Orchestrator.Sweeps;

/// <summary>
/// Independent samples of the space from the sweep's seeded generator: the same sweep and seed
/// give the same trials on any machine. Samples are drawn with replacement.
/// </summary>
public sealed class RandomSearch : ISearchMethod
{
    /// <inheritdoc />
    public string Name => "random";

    /// <inheritdoc />
    public IReadOnlyList<SearchAction> InitialTrials(SearchContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var space = context.Sweep.Space;
        // One draw per searched parameter per trial, in order: trial i's sample depends only on the seed and i.
        return [.. Enumerable.Range(0, context.MaxTrials).Select(_ => context.NewTrial(space.Sample(context.Random)))];
    }

    /// <inheritdoc />
    public IReadOnlyList<SearchAction> OnValidation(SearchContext context, int trialIndex, int epoch, double objective) => [];

    /// <inheritdoc />
    public IReadOnlyList<SearchAction> OnTrialExited(SearchContext context, int trialIndex, TrialExit exit) => [];

    /// <inheritdoc />
    public IReadOnlyList<SearchAction> Extend(SearchContext context, int more)
    {
        ArgumentNullException.ThrowIfNull(context);
        var space = context.Sweep.Space;
        // The generator continues where the first trials left it: the extension is as reproducible as they are.
        return [.. Enumerable.Range(0, more).Select(_ => context.NewTrial(space.Sample(context.Random)))];
    }

    /// <inheritdoc />
    public bool LearnsFromReports => false;

    /// <inheritdoc />
    public double Progress(SearchContext context) => SearchProgress.ExitedFraction(context);

    /// <inheritdoc />
    public JsonElement Snapshot() => SearchProgress.NoState;

    /// <inheritdoc />
    public void Restore(JsonElement state) { }
}

using Orchestrator.Coordinator.Domain;

namespace Orchestrator.Coordinator.Sweeps;

/// <summary>Trials best first by the sweep's objective and goal: the order of `orch trials`, ListTrials and ListBestTrials.</summary>
public static class TrialRanking
{
    /// <summary>
    /// Every trial, those with a best objective value first (best first by the goal), then the
    /// rest; ties by index.
    /// </summary>
    public static IEnumerable<TrialRecord> BestFirst(IEnumerable<TrialRecord> trials, bool maximize) => trials
        .OrderBy(t => t.BestMetric is null ? 1 : 0)
        .ThenBy(t => t.BestMetric is { } m ? (maximize ? -m : m) : 0)
        .ThenBy(t => t.Index);

    /// <summary>
    /// The trials that have a result (a best objective value: completed, stopped early, or still
    /// running with a report so far), best first, at most <paramref name="count"/>.
    /// </summary>
    public static IReadOnlyList<TrialRecord> Top(IEnumerable<TrialRecord> trials, bool maximize, int count) =>
        BestFirst(trials.Where(t => t.BestMetric is not null), maximize).Take(count).ToList();
}

using Grpc.Core;
using Orchestrator.Protocol.V1;

namespace Orchestrator.Cli.Remote;

/// <summary>Reads a sweep's trials page by page (ListTrials with a page size), so that no reply grows with the sweep.</summary>
internal static class TrialPages
{
    /// <summary>Trials per ListTrials call.</summary>
    public const int PageSize = 1000;

    /// <summary>Every trial of the sweep (optionally only those in <paramref name="state"/>), in index order.</summary>
    public static async Task<List<Trial>> ListAllAsync(CoordinatorConnection c, string sweepId, TrialState state, CancellationToken ct)
    {
        var trials = new List<Trial>();
        var token = "";
        do
        {
            var page = await c.Client.ListTrialsAsync(new ListTrialsRequest { SweepId = sweepId, PageSize = PageSize, PageToken = token, State = state }, c.Call(ct));
            trials.AddRange(page.Trials);
            token = page.NextPageToken;
        }
        while (token.Length > 0);
        return trials;
    }

    /// <summary>Best first by the objective (trials without a value last), then by index: the order `orch trials` shows.</summary>
    public static IEnumerable<Trial> BestFirst(IEnumerable<Trial> trials, Goal goal) => trials
        .OrderBy(t => t.HasBestMetric ? 0 : 1)
        .ThenBy(t => t.HasBestMetric ? (goal == Goal.Minimize ? t.BestMetric : -t.BestMetric) : 0)
        .ThenBy(t => t.Index);
}

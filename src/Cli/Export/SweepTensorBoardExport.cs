using Google.Protobuf.WellKnownTypes;
using Orchestrator.Protocol.V1;
using Orchestrator.TensorBoard;
using Orchestrator.TensorBoard.Protos.HParams;

namespace Orchestrator.Cli.Export;

/// <summary>What an export wrote.</summary>
internal sealed record TensorBoardExportResult(string Dir, int Runs, int Points);

/// <summary>
/// Writes a sweep as a TensorBoard log folder: the HParams experiment (the swept parameters and
/// our metrics) in the root run, and one run folder per trial holding its session start (its
/// parameter values), its metrics per epoch as scalars, and its session end once it finished.
/// Pure file writing over what the coordinator returned; the command fetches.
/// </summary>
internal static class SweepTensorBoardExport
{
    public static TensorBoardExportResult Write(Sweep sweep, IReadOnlyList<Trial> trials,
        IReadOnlyDictionary<string, IReadOnlyList<MetricPoint>> metrics, string dir)
    {
        var root = Path.GetFullPath(dir);
        var sessions = trials.ToDictionary(t => t.Id,
            t => (IReadOnlyDictionary<string, Value>)t.Parameters.ToDictionary(p => p.Key, p => HParamsSummaries.ToValue(p.Value), StringComparer.Ordinal));

        RemoveOldEventFiles(root);
        var created = sweep.CreatedAt?.ToDateTimeOffset() ?? DateTimeOffset.UtcNow;
        using (var experiment = new EventFileWriter(root, created))
        {
            experiment.WriteSummary(0, HParamsSummaries.Experiment(string.IsNullOrEmpty(sweep.Name) ? sweep.Id : sweep.Name,
                HParamsSummaries.InfosFrom(sessions.Values), TensorBoardTags.MetricInfos(), created), created);
        }

        var points = 0;
        foreach (var trial in trials.OrderBy(t => t.Index))
        {
            var runDir = Path.Combine(root, RunName(trial));
            RemoveOldEventFiles(runDir);
            var start = trial.StartedAt?.ToDateTimeOffset() ?? created;
            using var writer = new EventFileWriter(runDir, start);
            writer.WriteSummary(0, HParamsSummaries.SessionStart(sessions[trial.Id], start, groupName: RunName(trial)), start);
            foreach (var p in metrics.GetValueOrDefault(trial.Id) ?? [])
            {
                writer.WriteScalars(p.Epoch, p.Values.Select(kv => KeyValuePair.Create(TensorBoardTags.For(kv.Key), kv.Value)),
                    p.Time?.ToDateTimeOffset());
                points++;
            }
            if (EndStatus(trial.State) is { } status)
            {
                var end = trial.FinishedAt?.ToDateTimeOffset() ?? DateTimeOffset.UtcNow;
                writer.WriteSummary(trial.Epoch, HParamsSummaries.SessionEnd(status, end), end);
            }
        }
        return new TensorBoardExportResult(root, trials.Count, points);
    }

    /// <summary>The trial's run folder: its position in the sweep, then its id (sorts in creation order).</summary>
    public static string RunName(Trial t) => $"trial-{t.Index:D3}-{string.Concat(t.Id.Select(c => char.IsLetterOrDigit(c) || c is '-' or '_' ? c : '_'))}";

    private static Status? EndStatus(TrialState state) => state switch
    {
        TrialState.Completed => Status.Success,
        TrialState.Failed => Status.Failure,
        TrialState.Cancelled => Status.Unknown,
        TrialState.Stopped => Status.Success, // stopped early: a result, at fewer epochs
        _ => null, // still pending or running: no end yet
    };

    /// <summary>A new export replaces the previous one's event files (ours only, by name) so TensorBoard does not read both.</summary>
    private static void RemoveOldEventFiles(string dir)
    {
        if (!Directory.Exists(dir)) return;
        foreach (var f in Directory.EnumerateFiles(dir, "events.out.tfevents.*")) File.Delete(f);
    }
}

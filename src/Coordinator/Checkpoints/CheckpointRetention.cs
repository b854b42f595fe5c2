using Orchestrator.Coordinator.Domain;

namespace Orchestrator.Coordinator.Checkpoints;

/// <summary>
/// Which checkpoints a sweep keeps once trials end: best.ckpt of its best
/// <see cref="CheckpointStoreOptions.KeepBestPerSweep"/> trials (and of the sweep's best trial),
/// latest.ckpt only of trials that may still resume.
/// </summary>
public sealed class CheckpointRetention(CheckpointStore checkpoints)
{
    /// <summary>Deletes what the sweep no longer needs, given all its trials.</summary>
    public void Prune(SweepRecord sweep, IReadOnlyList<TrialRecord> trials, bool maximize)
    {
        var ranked = trials.Where(t => t.BestMetric is not null)
            .OrderBy(t => maximize ? -t.BestMetric!.Value : t.BestMetric!.Value)
            .Select(t => t.Id).Take(checkpoints.KeepBestPerSweep).ToHashSet(StringComparer.Ordinal);
        if (sweep.BestTrialId is { } best) ranked.Add(best);
        foreach (var t in trials.Where(t => t.IsFinished))
        {
            checkpoints.Delete(t.SweepId, t.Id, CheckpointSlot.Latest);
            if (!ranked.Contains(t.Id)) checkpoints.Delete(t.SweepId, t.Id, CheckpointSlot.Best);
        }
    }
}

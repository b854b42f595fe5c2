using System.Collections.Concurrent;
using Orchestrator.Coordinator.Domain;
using Orchestrator.Coordinator.State;
using Orchestrator.Sweeps;

namespace Orchestrator.Coordinator.Checkpoints;

/// <summary>
/// Which checkpoints a sweep keeps: <c>best.ckpt</c> of the <see cref="CheckpointStore.KeepBestPerSweep"/>
/// best finished trials by the objective, plus the sweep's best trial; and <c>latest.ckpt</c> only
/// of the completed trials among them, so that orch extend --epochs can train them on. A stopped,
/// failed or cancelled trial's <c>latest.ckpt</c> goes at once (it was only for resuming). The
/// ranking lives in memory, so a trial's end costs the same whatever the size of the sweep; the
/// first end in a sweep after a coordinator start reads the sweep's finished trials once to rebuild it.
/// </summary>
public sealed class CheckpointRetention(IStateStore store, CheckpointStore checkpoints)
{
    private readonly ConcurrentDictionary<string, Kept> _kept = new(StringComparer.Ordinal);

    /// <summary>Prunes after <paramref name="trial"/> ended. Callers serialise calls per sweep.</summary>
    public async Task TrialEndedAsync(SweepRecord sweep, TrialRecord trial, ValidatedSweep spec, CancellationToken ct)
    {
        if (!_kept.TryGetValue(sweep.Id, out var kept))
        {
            kept = new Kept(spec.Maximize);
            foreach (var t in await store.ListTrialsAsync(sweep.Id, ct).ConfigureAwait(false))
            {
                if (t.IsFinished && t.Id != trial.Id && t.BestMetric is { } m && checkpoints.Exists(t.SweepId, t.Id, CheckpointSlot.Best)) kept.Add(m, t.Id);
            }
            _kept[sweep.Id] = kept;
        }
        if (trial.State != TrialStatus.Completed) checkpoints.Delete(trial.SweepId, trial.Id, CheckpointSlot.Latest);
        if (trial.BestMetric is not { } metric)
        {
            checkpoints.Delete(trial.SweepId, trial.Id, CheckpointSlot.Latest);
            checkpoints.Delete(trial.SweepId, trial.Id, CheckpointSlot.Best);
            return;
        }
        kept.Add(metric, trial.Id);
        while (kept.Count > checkpoints.KeepBestPerSweep)
        {
            var evicted = kept.RemoveWorst();
            if (evicted == sweep.BestTrialId) continue;
            checkpoints.Delete(sweep.Id, evicted, CheckpointSlot.Best);
            checkpoints.Delete(sweep.Id, evicted, CheckpointSlot.Latest);
        }
    }

    /// <summary>
    /// A completed trial trains on (orch extend --epochs): it leaves the ranking until it ends
    /// again, so that no other trial's end prunes the checkpoint it resumes from.
    /// </summary>
    public void TrialReopened(string sweepId, string trialId)
    {
        if (_kept.TryGetValue(sweepId, out var kept)) kept.Remove(trialId);
    }

    // Finished trials whose best.ckpt is kept, best first; a trial appears once.
    private sealed class Kept(bool maximize)
    {
        private readonly SortedSet<(double Key, string TrialId)> _set = new();
        private readonly Dictionary<string, double> _keys = new(StringComparer.Ordinal);

        public int Count => _set.Count;

        public void Add(double metric, string trialId)
        {
            Remove(trialId);
            var key = maximize ? -metric : metric;
            _set.Add((key, trialId));
            _keys[trialId] = key;
        }

        public void Remove(string trialId)
        {
            if (_keys.Remove(trialId, out var key)) _set.Remove((key, trialId));
        }

        public string RemoveWorst()
        {
            var worst = _set.Max;
            _set.Remove(worst);
            _keys.Remove(worst.TrialId);
            return worst.TrialId;
        }
    }
}

using System.Collections.Concurrent;
using Orchestrator.Coordinator.Domain;
using Orchestrator.Coordinator.State;
using Orchestrator.Sweeps;

namespace Orchestrator.Coordinator.Checkpoints;

/// <summary>
/// Which checkpoints a sweep keeps: a finished trial's <c>latest.ckpt</c> goes (it was only for
/// resuming), and <c>best.ckpt</c> stays for the <see cref="CheckpointStore.KeepBestPerSweep"/>
/// best finished trials by the objective, plus the sweep's best trial. The ranking lives in
/// memory, so a trial's end costs the same whatever the size of the sweep; the first end in a
/// sweep after a coordinator start reads the sweep's finished trials once to rebuild it.
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
        checkpoints.Delete(trial.SweepId, trial.Id, CheckpointSlot.Latest);
        if (trial.BestMetric is not { } metric)
        {
            checkpoints.Delete(trial.SweepId, trial.Id, CheckpointSlot.Best);
            return;
        }
        kept.Add(metric, trial.Id);
        while (kept.Count > checkpoints.KeepBestPerSweep)
        {
            var evicted = kept.RemoveWorst();
            if (evicted != sweep.BestTrialId) checkpoints.Delete(sweep.Id, evicted, CheckpointSlot.Best);
        }
    }

    // Finished trials whose best.ckpt is kept, best first.
    private sealed class Kept(bool maximize)
    {
        private readonly SortedSet<(double Key, string TrialId)> _set = new();

        public int Count => _set.Count;

        public void Add(double metric, string trialId) => _set.Add((maximize ? -metric : metric, trialId));

        public string RemoveWorst()
        {
            var worst = _set.Max;
            _set.Remove(worst);
            return worst.TrialId;
        }
    }
}

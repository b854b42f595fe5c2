using Orchestrator.Coordinator.Domain;
using Orchestrator.Specs;
using Orchestrator.Sweeps;

namespace Orchestrator.Coordinator.Sweeps;

/// <summary>Recovery after a restart, and the warm start of a new sweep from an earlier one.</summary>
public sealed partial class SweepManager
{
    /// <summary>
    /// Reloads the searchers of unfinished sweeps after a restart and replays what their saved
    /// state missed: the store is written before the searcher's state (trials first, the sweep
    /// record last), so a coordinator killed in between left reports and trial ends in the store
    /// that the searcher has not seen. They are fed to it again in the order they happened, and it
    /// takes the same actions it took or would have taken; applying them again is idempotent.
    /// </summary>
    public async Task RecoverAsync(CancellationToken ct)
    {
        foreach (var sweep in await store.ListSweepsAsync(ct).ConfigureAwait(false))
        {
            if (!sweep.IsUnfinished) continue;
            SweepRuntime runtime;
            try
            {
                runtime = runtimes.Of(sweep);
            }
            catch (SpecException e)
            {
                // A spec that no longer validates (a newer coordinator, stricter rules): end it visibly.
                await FinishSweepAsync(sweep.Id, SweepStatus.Failed, "cannot resume: " + e.Message, ct).ConfigureAwait(false);
                continue;
            }
            await runtime.Gate.WaitAsync(ct).ConfigureAwait(false);
            try
            {
                await ReplayAsync(runtime, ct).ConfigureAwait(false);
            }
            finally
            {
                runtime.Gate.Release();
            }
            Log.SweepRecovered(logger, sweep.Id);
        }
    }

    private async Task ReplayAsync(SweepRuntime runtime, CancellationToken ct)
    {
        var searcher = runtime.Searcher;
        var known = searcher.Trials().ToDictionary(t => t.Index);
        var stored = await store.ListTrialsAsync(runtime.Id, ct).ConfigureAwait(false);

        // Objective reports the searcher has not seen, across trials, in the order they arrived.
        List<(DateTimeOffset Time, int Index, int Epoch, double Value)> missed = [];
        foreach (var t in stored)
        {
            var lastSeen = known.TryGetValue(t.Index, out var k) ? k.LastEpoch ?? 0 : 0;
            if (k.Exited || t.Epoch <= lastSeen) continue;
            foreach (var epoch in (await store.GetMetricsAsync(t.Id, ct).ConfigureAwait(false))
                         .Where(p => p.Epoch > lastSeen && (p.Values.TryGetValue(runtime.Spec.ObjectiveMetric, out var v) && double.IsFinite(v) || TrialLifecycle.Diverged(p, runtime.Spec)))
                         .GroupBy(p => p.Epoch))
            {
                var point = epoch.Last();
                missed.Add((point.Time, t.Index, point.Epoch, point.Values.GetValueOrDefault(runtime.Spec.ObjectiveMetric, double.NaN)));
            }
        }
        foreach (var (_, index, epoch, value) in missed.OrderBy(m => m.Time).ThenBy(m => m.Index).ThenBy(m => m.Epoch))
        {
            await ApplyActionsAsync(runtime, searcher.OnValidation(index, epoch, value), ct, s => s with
            {
                BestTrialId = runtime.Spec.IsBetter(value, s.BestMetric) ? TrialLifecycle.TrialId(runtime.Id, index) : s.BestTrialId,
                BestMetric = runtime.Spec.IsBetter(value, s.BestMetric) ? value : s.BestMetric,
            }).ConfigureAwait(false);
        }

        // Completed trials the searcher let train on (orch extend --epochs) whose reopening did not reach the store.
        known = searcher.Trials().ToDictionary(t => t.Index);
        foreach (var t in stored.Where(t => t.State == TrialStatus.Completed && t.Epochs < runtime.Spec.Epochs))
        {
            if (!known.TryGetValue(t.Index, out var k) || k.Exited) continue;
            await ReopenAsync(runtime, t.Index, ct).ConfigureAwait(false);
            stored = [.. stored.Select(s => s.Index == t.Index ? s with { State = TrialStatus.Pending } : s)];
        }

        // Trial ends the searcher has not seen (a user's stop counts as stopped early).
        var exits = 0;
        foreach (var t in stored.Where(t => t.IsFinished && t.State != TrialStatus.Cancelled).OrderBy(t => t.FinishedAt).ThenBy(t => t.Index))
        {
            if (!known.TryGetValue(t.Index, out var k) || k.Exited) continue;
            exits++;
            var actions = t.State == TrialStatus.Stopped
                ? searcher.Stop(t.Index, t.Message ?? "stopped early")
                : searcher.OnTrialExited(t.Index, t.State == TrialStatus.Completed);
            var failed = t.State == TrialStatus.Failed;
            await ApplyActionsAsync(runtime, actions, ct, s => s with { FailedTrials = s.FailedTrials + (failed ? 1 : 0) }).ConfigureAwait(false);
        }

        // Trials the searcher stopped whose stop did not reach the store.
        foreach (var k in searcher.Trials().Where(k => k.Stopped))
        {
            var id = TrialLifecycle.TrialId(runtime.Id, k.Index);
            if (stored.FirstOrDefault(t => t.Index == k.Index) is { IsFinished: false })
                await trials.StopAsync(id, "stopped early by the searcher", ct).ConfigureAwait(false);
        }
        // A search that ended whose sweep did not.
        if (searcher.Ended is { } ended)
            await FinishSweepAsync(runtime.Id, ended.Failed ? SweepStatus.Failed : SweepStatus.Completed, ended.Reason, ct).ConfigureAwait(false);
        if (missed.Count > 0 || exits > 0) Log.SweepReplayed(logger, runtime.Id, missed.Count, exits);
    }

    /// <summary>
    /// The results of sweep <paramref name="fromSweepId"/> for <paramref name="spec"/>'s warm start
    /// (search.warmStartFrom): its completed and stopped trials, with their best objective. The
    /// earlier sweep must have searched the same parameters.
    /// </summary>
    private async Task<IReadOnlyList<SearchObservation>> WarmStartAsync(ValidatedSweep spec, string fromSweepId, CancellationToken ct)
    {
        var from = await store.GetSweepAsync(fromSweepId, ct).ConfigureAwait(false)
                   ?? throw new SpecException($"search.warmStartFrom: no sweep '{fromSweepId}'");
        var fromSpec = runtimes.TrySpecOf(from)
                       ?? throw new SpecException($"search.warmStartFrom: the spec of sweep {fromSweepId} no longer validates");
        var names = spec.Space.Searched.Select(p => p.Path).Order(StringComparer.Ordinal).ToList();
        var fromNames = fromSpec.Space.Searched.Select(p => p.Path).Order(StringComparer.Ordinal).ToList();
        if (!names.SequenceEqual(fromNames, StringComparer.Ordinal))
            throw new SpecException($"search.warmStartFrom: sweep {fromSweepId} searched {string.Join(", ", fromNames)}; this sweep searches {string.Join(", ", names)}: a warm start needs the same parameters");
        if (fromSpec.ObjectiveMetric != spec.ObjectiveMetric || fromSpec.Maximize != spec.Maximize)
            throw new SpecException($"search.warmStartFrom: sweep {fromSweepId} optimised another objective ({fromSpec.ObjectiveMetric}); this sweep optimises {spec.ObjectiveMetric}");
        var observations = new List<SearchObservation>();
        foreach (var t in (await store.ListTrialsAsync(fromSweepId, ct).ConfigureAwait(false)).OrderBy(t => t.Index))
        {
            if (t.State is not (TrialStatus.Completed or TrialStatus.Stopped) || t.BestMetric is not { } best) continue;
            var parameters = names.Where(t.Parameters.ContainsKey).ToDictionary(n => n, n => t.Parameters[n], StringComparer.Ordinal);
            observations.Add(new SearchObservation(parameters, best, t.Epoch, t.State == TrialStatus.Stopped ? TrialExit.Stopped : TrialExit.Completed));
        }
        if (observations.Count == 0)
            throw new SpecException($"search.warmStartFrom: sweep {fromSweepId} has no completed or stopped trial to learn from");
        return observations;
    }
}

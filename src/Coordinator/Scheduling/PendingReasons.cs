using Orchestrator.Coordinator.Domain;

namespace Orchestrator.Coordinator.Scheduling;

/// <summary>
/// Why pending trials wait, as of the scheduler's last pass, kept per sweep: every trial of a
/// sweep asks for the same resources, so once one waits the rest wait for the same reason, and
/// a sweep of 100,000 pending trials costs one entry. In memory only: a reason is a fact about
/// the fleet right now, recomputed on every pass (a restarted coordinator has them again after
/// its first pass). Read by the API (orch trials, orch watch) and the metrics.
/// </summary>
public sealed class PendingReasons
{
    private volatile IReadOnlyDictionary<string, SweepWait> _current = new Dictionary<string, SweepWait>(StringComparer.Ordinal);

    /// <summary>The reason a trial waits, or null (not pending, or nothing holds it back).</summary>
    public PendingReason? Of(TrialRecord trial)
    {
        ArgumentNullException.ThrowIfNull(trial);
        return trial.State == TrialStatus.Pending ? _current.GetValueOrDefault(trial.SweepId)?.Reason : null;
    }

    /// <summary>Installs the waits of a pass (sweep id → reason and how many trials wait); returns the sweeps whose reason appeared, changed or went away.</summary>
    public IReadOnlyList<string> Replace(IReadOnlyDictionary<string, SweepWait> next)
    {
        ArgumentNullException.ThrowIfNull(next);
        var previous = _current;
        _current = next;
        var changed = next.Where(kv => !previous.TryGetValue(kv.Key, out var old) || old.Reason != kv.Value.Reason).Select(kv => kv.Key).ToList();
        changed.AddRange(previous.Keys.Where(id => !next.ContainsKey(id)));
        return changed;
    }

    /// <summary>Pending trials by reason, every reason present (0 when none): the orch_trials_pending gauge.</summary>
    public IReadOnlyList<(PendingReasonKind Kind, long Count)> Counts()
    {
        var current = _current;
        return PendingReasonLabels.All.Select(k => (k, current.Values.Where(w => w.Reason.Kind == k).Sum(w => w.Trials))).ToList();
    }
}

/// <summary>Why a sweep's pending trials wait, and how many of them do.</summary>
public sealed record SweepWait(PendingReason Reason, long Trials);

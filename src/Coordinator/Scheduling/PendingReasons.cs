namespace Orchestrator.Coordinator.Scheduling;

/// <summary>
/// Why each pending trial waits, as of the scheduler's last pass. In memory only: a reason is a
/// fact about the fleet right now, recomputed on every pass (a restarted coordinator has them
/// again after its first pass). Read by the API (orch trials, orch watch) and the metrics.
/// </summary>
public sealed class PendingReasons
{
    private volatile IReadOnlyDictionary<string, PendingReason> _current = new Dictionary<string, PendingReason>(StringComparer.Ordinal);

    /// <summary>The reason a trial waits, or null (not pending, or not looked at yet).</summary>
    public PendingReason? Of(string trialId) => _current.GetValueOrDefault(trialId);

    /// <summary>Installs the reasons of a pass; returns the trials whose reason appeared, changed or went away.</summary>
    public IReadOnlyList<string> Replace(IReadOnlyDictionary<string, PendingReason> next)
    {
        var previous = _current;
        _current = next;
        var changed = next.Where(kv => !previous.TryGetValue(kv.Key, out var old) || old != kv.Value).Select(kv => kv.Key).ToList();
        changed.AddRange(previous.Keys.Where(id => !next.ContainsKey(id)));
        return changed;
    }

    /// <summary>Pending trials by reason, every reason present (0 when none): the orch_trials_pending gauge.</summary>
    public IReadOnlyList<(PendingReasonKind Kind, long Count)> Counts()
    {
        var current = _current;
        return PendingReasonLabels.All.Select(k => (k, (long)current.Values.Count(r => r.Kind == k))).ToList();
    }
}

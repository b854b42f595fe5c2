using Orchestrator.Coordinator.Domain;
using Orchestrator.Coordinator.State;

namespace Orchestrator.Coordinator.Sweeps;

/// <summary>
/// Every change to a stored sweep or trial: read, apply a pure change, compare-and-set on the
/// version, and on a lost race read again and re-apply, so a concurrent writer's change is never
/// overwritten. A change returns null to decline (the record is no longer in a state it applies to).
/// </summary>
public sealed class RecordUpdates(IStateStore store)
{
    /// <summary>Retries before a record counts as hopelessly contended (a bug, not load).</summary>
    public const int MaxRetries = 100;

    /// <summary>Applies <paramref name="change"/> to the trial; the stored result, or null when it declined or the trial is gone.</summary>
    public Task<TrialRecord?> TrialAsync(string trialId, Func<TrialRecord, TrialRecord?> change, CancellationToken ct) =>
        UpdateAsync(trialId, "trial", store.GetTrialAsync, store.TryUpdateTrialAsync, static t => t.Version, static (t, v) => t with { Version = v }, change, ct);

    /// <summary>Applies <paramref name="change"/> to the sweep; the stored result, or null when it declined or the sweep is gone.</summary>
    public Task<SweepRecord?> SweepAsync(string sweepId, Func<SweepRecord, SweepRecord?> change, CancellationToken ct) =>
        UpdateAsync(sweepId, "sweep", store.GetSweepAsync, store.TryUpdateSweepAsync, static s => s.Version, static (s, v) => s with { Version = v }, change, ct);

    private static async Task<T?> UpdateAsync<T>(
        string id,
        string kind,
        Func<string, CancellationToken, Task<T?>> read,
        Func<T, long, CancellationToken, Task<bool>> tryWrite,
        Func<T, long> version,
        Func<T, long, T> withVersion,
        Func<T, T?> change,
        CancellationToken ct) where T : class
    {
        for (var attempt = 0; ; attempt++)
        {
            var current = await read(id, ct).ConfigureAwait(false);
            if (current is null) return null;
            var next = change(current);
            if (next is null) return null;
            var expected = version(current);
            // The store sets the new version (expected + 1) itself; the returned copy says so too.
            if (await tryWrite(next, expected, ct).ConfigureAwait(false)) return withVersion(next, expected + 1);
            if (attempt >= MaxRetries) throw new InvalidOperationException($"{kind} {id}: too much contention");
        }
    }
}

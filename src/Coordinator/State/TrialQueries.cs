using Orchestrator.Coordinator.Domain;

namespace Orchestrator.Coordinator.State;

/// <summary>How many of a sweep's trials are in each state (kept by the store, not counted on demand).</summary>
public readonly record struct TrialCounts(long Pending, long Running, long Completed, long Failed, long Cancelled, long Stopped = 0)
{
    public long Total => Pending + Running + Completed + Failed + Cancelled + Stopped;

    /// <summary>Trials that have not ended yet.</summary>
    public long Unfinished => Pending + Running;

    public long Of(TrialStatus state) => state switch
    {
        TrialStatus.Pending => Pending,
        TrialStatus.Running => Running,
        TrialStatus.Completed => Completed,
        TrialStatus.Failed => Failed,
        TrialStatus.Cancelled => Cancelled,
        TrialStatus.Stopped => Stopped,
        _ => throw new ArgumentOutOfRangeException(nameof(state), state, null),
    };

    /// <summary>Counts from a per-state array indexed by <see cref="TrialStatus"/>.</summary>
    public static TrialCounts From(ReadOnlySpan<long> byState) =>
        new(byState[(int)TrialStatus.Pending], byState[(int)TrialStatus.Running], byState[(int)TrialStatus.Completed],
            byState[(int)TrialStatus.Failed], byState[(int)TrialStatus.Cancelled], byState[(int)TrialStatus.Stopped]);
}

/// <summary>
/// One page of a sweep's trials, by index: those with an index above <see cref="AfterIndex"/>
/// (-1 for the first page), at most <see cref="Limit"/>, optionally only those in one state.
/// A client pages by passing the last index it received.
/// </summary>
public readonly record struct TrialPageQuery(int AfterIndex, int Limit, TrialStatus? State = null)
{
    /// <summary>The first page.</summary>
    public static TrialPageQuery First(int limit, TrialStatus? state = null) => new(-1, limit, state);
}

/// <summary>A compare-and-set of one trial: store <see cref="Updated"/> if the stored version is still <see cref="ExpectedVersion"/>.</summary>
public readonly record struct TrialUpdate(TrialRecord Updated, long ExpectedVersion);

/// <summary>
/// The index fields a store keeps next to each trial so that it can answer the scheduler's
/// questions (pending trials of a sweep by index, expired leases, counts per state) without
/// reading every trial: derived from the record, in one place for both stores.
/// </summary>
internal readonly record struct TrialIndexEntry(int State, long? LeaseExpiresMs)
{
    public static TrialIndexEntry Of(TrialRecord trial) =>
        new((int)trial.State, trial.State == TrialStatus.Running ? trial.LeaseExpiresAt?.ToUnixTimeMilliseconds() : null);

    /// <summary>The number of states (<see cref="TrialStatus"/> values 0 … n-1).</summary>
    public const int StateCount = 6;
}

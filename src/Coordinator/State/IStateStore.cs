using Orchestrator.Coordinator.Domain;

namespace Orchestrator.Coordinator.State;

/// <summary>
/// Where the coordinator keeps everything that must survive a restart: sweeps, trials, workers
/// and metric history. Two implementations pass one contract test suite: Redis (clusters) and
/// SQLite under a state folder (<c>orch local</c>).
/// <para>
/// Concurrency rule: records are replaced whole with compare-and-set on <c>Version</c>
/// (<see cref="TryUpdateSweepAsync"/>, <see cref="TryUpdateTrialAsync"/>); the caller re-reads and
/// retries on <c>false</c>. The store assigns the new version (expected + 1) itself, whatever the
/// record's Version says. Metric appends check the trial's fencing token and the step atomically.
/// </para>
/// Every method may throw <see cref="StateStoreUnavailableException"/> when the backing store
/// cannot be reached; callers retry.
/// </summary>
public interface IStateStore
{
    /// <summary>Stores a new sweep and its first trials atomically (all or nothing). Throws
    /// <see cref="InvalidOperationException"/> if the sweep id exists.</summary>
    Task CreateSweepAsync(SweepRecord sweep, IReadOnlyList<TrialRecord> trials, CancellationToken ct);

    Task<SweepRecord?> GetSweepAsync(string sweepId, CancellationToken ct);

    /// <summary>All sweeps in creation order (oldest first).</summary>
    Task<IReadOnlyList<SweepRecord>> ListSweepsAsync(CancellationToken ct);

    /// <summary>Replaces the sweep if its stored version equals <paramref name="expectedVersion"/>.</summary>
    Task<bool> TryUpdateSweepAsync(SweepRecord updated, long expectedVersion, CancellationToken ct);

    /// <summary>Adds trials to an existing sweep (searchers that create trials as results arrive).
    /// Trials whose id already exists are left as they are (idempotent).</summary>
    Task AddTrialsAsync(string sweepId, IReadOnlyList<TrialRecord> trials, CancellationToken ct);

    Task<TrialRecord?> GetTrialAsync(string trialId, CancellationToken ct);

    /// <summary>The sweep's trials by index.</summary>
    Task<IReadOnlyList<TrialRecord>> ListTrialsAsync(string sweepId, CancellationToken ct);

    /// <summary>Replaces the trial if its stored version equals <paramref name="expectedVersion"/>.</summary>
    Task<bool> TryUpdateTrialAsync(TrialRecord updated, long expectedVersion, CancellationToken ct);

    /// <summary>
    /// Replaces several trials of one sweep in one round trip, each by its own compare-and-set
    /// (bulk cancel). Returns, per update, whether it was stored; the others changed meanwhile
    /// (the caller re-reads those) or do not exist.
    /// </summary>
    Task<IReadOnlyList<bool>> TryUpdateTrialsAsync(string sweepId, IReadOnlyList<TrialUpdate> updates, CancellationToken ct);

    /// <summary>
    /// Appends a metric point if <paramref name="fencingToken"/> is the trial's current token and
    /// no point with the same step exists, as one atomic operation.
    /// </summary>
    Task<MetricAppendResult> AppendMetricAsync(string trialId, long fencingToken, MetricPointRecord point, CancellationToken ct);

    /// <summary>
    /// As <see cref="AppendMetricAsync(string, long, MetricPointRecord, CancellationToken)"/>, and
    /// in the same atomic step replaces the trial with <paramref name="trial"/> (its summary of the
    /// new point) if the trial's version is still the expected one: either both are stored or
    /// neither (<see cref="MetricAppendResult.Conflict"/>: re-read the trial and try again). A metric
    /// report is then two round trips: read the trial, write both.
    /// </summary>
    Task<MetricAppendResult> AppendMetricAsync(string trialId, long fencingToken, MetricPointRecord point, TrialUpdate trial, CancellationToken ct);

    // ---- indexes: what the scheduler and the API ask often, answered without reading every trial ----

    /// <summary>The sweep's pending trials by index, at most <paramref name="limit"/>.</summary>
    Task<IReadOnlyList<TrialRecord>> ListPendingTrialsAsync(string sweepId, int limit, CancellationToken ct);

    /// <summary>Running trials (of any sweep) whose lease ended before <paramref name="now"/>, earliest first, at most <paramref name="limit"/>.</summary>
    Task<IReadOnlyList<TrialRecord>> ListExpiredLeasesAsync(DateTimeOffset now, int limit, CancellationToken ct);

    /// <summary>The sweep's trials counted by state (all zero for an unknown sweep).</summary>
    Task<TrialCounts> CountTrialsAsync(string sweepId, CancellationToken ct);

    /// <summary>One page of the sweep's trials by index (see <see cref="TrialPageQuery"/>).</summary>
    Task<IReadOnlyList<TrialRecord>> ListTrialsPageAsync(string sweepId, TrialPageQuery query, CancellationToken ct);

    /// <summary>The trial's metric points by step.</summary>
    Task<IReadOnlyList<MetricPointRecord>> GetMetricsAsync(string trialId, CancellationToken ct);

    /// <summary>
    /// Appends lines to a trial's log if <paramref name="fencingToken"/> is the trial's current
    /// token, as one atomic operation: the lines get the next sequence numbers in the order given
    /// (continuing over every earlier append of the trial), and then only the last
    /// <paramref name="keep"/> lines of the trial are kept.
    /// </summary>
    Task<LogAppendResult> AppendTrialLogAsync(string trialId, long fencingToken, IReadOnlyList<TrialLogLine> lines, int keep, CancellationToken ct);

    /// <summary>
    /// The trial's kept log lines whose sequence number is above <paramref name="afterSeq"/>, in
    /// sequence order, at most <paramref name="limit"/> (empty for an unknown trial).
    /// </summary>
    Task<IReadOnlyList<TrialLogLine>> GetTrialLogAsync(string trialId, long afterSeq, int limit, CancellationToken ct);

    Task UpsertWorkerAsync(WorkerRecord worker, CancellationToken ct);

    Task<IReadOnlyList<WorkerRecord>> ListWorkersAsync(CancellationToken ct);

    Task RemoveWorkerAsync(string workerId, CancellationToken ct);

    /// <summary>Returns when the backing store answers a trivial request; throws
    /// <see cref="StateStoreUnavailableException"/> when it cannot be reached (the coordinator's readiness).</summary>
    Task PingAsync(CancellationToken ct);
}

/// <summary>The backing store (Redis, the SQLite file) cannot be reached right now.</summary>
public sealed class StateStoreUnavailableException : Exception
{
    public StateStoreUnavailableException() { }
    public StateStoreUnavailableException(string message) : base(message) { }
    public StateStoreUnavailableException(string message, Exception inner) : base(message, inner) { }
}

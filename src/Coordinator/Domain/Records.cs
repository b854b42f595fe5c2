using System.Text.Json.Serialization;

namespace Orchestrator.Coordinator.Domain;

/// <summary>Lifecycle of a sweep (mirrors orchestrator.v1.SweepState).</summary>
public enum SweepStatus { Pending, Running, Completed, Failed, Cancelled, Paused }

/// <summary>Lifecycle of a trial (mirrors orchestrator.v1.TrialState).</summary>
public enum TrialStatus
{
    Pending,
    Running,
    Completed,
    Failed,
    Cancelled,
    /// <summary>Stopped early (by the sweep's stopping rule or a user): a result at fewer epochs, with its checkpoint and metrics.</summary>
    Stopped,
}

/// <summary>
/// A sweep as persisted. Records are immutable; a change is a new record written with
/// <see cref="IStateStore.TryUpdateSweepAsync"/>, which succeeds only if <see cref="Version"/> is
/// still the stored one (compare-and-set), so concurrent writers never lose an update.
/// </summary>
public sealed record SweepRecord
{
    public required string Id { get; init; }
    public required string Name { get; init; }
    public SweepStatus State { get; init; }
    /// <summary>The submitted spec, verbatim.</summary>
    public required string SpecYaml { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset? FinishedAt { get; init; }
    public string? BestTrialId { get; init; }
    public double? BestMetric { get; init; }
    /// <summary>Why the sweep ended, for people.</summary>
    public string? Message { get; init; }
    /// <summary>The searcher's persisted state (JSON), restored after a coordinator restart.</summary>
    public string? SearcherState { get; init; }
    /// <summary>Trials that failed for good so far (against search.maxFailedTrials).</summary>
    public int FailedTrials { get; init; }
    /// <summary>The epochs every trial trains after orch extend --epochs raised them; null: the spec's trial.epochs.</summary>
    public int? Epochs { get; init; }
    /// <summary>Stored version; the store sets it on every successful write.</summary>
    public long Version { get; init; }

    /// <summary>Pending, running or paused: its searcher may still act.</summary>
    [JsonIgnore] public bool IsUnfinished => State is SweepStatus.Pending or SweepStatus.Running or SweepStatus.Paused;
}

/// <summary>A trial as persisted; see <see cref="SweepRecord"/> for the update rule.</summary>
public sealed record TrialRecord
{
    /// <summary>"{sweepId}-t{index:0000}".</summary>
    public required string Id { get; init; }
    public required string SweepId { get; init; }
    public int Index { get; init; }
    /// <summary>Sampled hyperparameters by dotted path, as strings.</summary>
    public IReadOnlyDictionary<string, string> Parameters { get; init; } = new Dictionary<string, string>();
    /// <summary>
    /// The complete trial spec (YAML) with the parameters applied, when it was stored with the
    /// record (trials created before it was built at assignment). Null: the sweep's spec with
    /// <see cref="Parameters"/> applied, built when the trial is assigned; a sweep of 10,000 trials
    /// is then accepted without writing 10,000 YAML documents.
    /// </summary>
    public string? TrialYaml { get; init; }
    public TrialStatus State { get; init; }
    /// <summary>Assignments so far.</summary>
    public int Attempt { get; init; }
    /// <summary>
    /// Assignments that ended with the worker handing the trial back because it was shutting down
    /// (a drain, at an epoch boundary). They are not failures: <see cref="CountedAttempts"/> leaves
    /// them out, so a trial is never failed for having run on workers that were scaled down.
    /// </summary>
    public int HandedBack { get; init; }
    /// <summary>
    /// Fencing token: increases on every assignment. Workers send it with every write; a write
    /// carrying an older token comes from a stale worker and is refused.
    /// </summary>
    public long FencingToken { get; init; }
    /// <summary>Workers holding the lease, in rank order (empty when not running).</summary>
    public IReadOnlyList<string> WorkerIds { get; init; } = [];
    public DateTimeOffset? LeaseExpiresAt { get; init; }
    /// <summary>Epochs completed (from the latest metric report) and planned.</summary>
    public int Epoch { get; init; }
    public int Epochs { get; init; }
    public double? LatestMetric { get; init; }
    public double? BestMetric { get; init; }
    /// <summary>The epoch whose report gave <see cref="BestMetric"/> (0 before the first report).</summary>
    public int BestEpoch { get; init; }
    /// <summary>Epochs completed in the stored checkpoint (0 = none stored).</summary>
    public int CheckpointEpoch { get; init; }
    public string? Message { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset? StartedAt { get; init; }
    public DateTimeOffset? FinishedAt { get; init; }
    public long Version { get; init; }

    /// <summary>Assignments that count against MaxTrialAttempts: every one except those handed back by a draining worker.</summary>
    [JsonIgnore] public int CountedAttempts => Attempt - HandedBack;

    [JsonIgnore] public bool IsFinished => State is TrialStatus.Completed or TrialStatus.Failed or TrialStatus.Cancelled or TrialStatus.Stopped;

    /// <summary>Running under the assignment with <paramref name="fencingToken"/>: the only writer whose uploads, reports and gradients count.</summary>
    public bool IsHeldWith(long fencingToken) => State == TrialStatus.Running && FencingToken == fencingToken;
}

/// <summary>A worker as last seen.</summary>
public sealed record WorkerRecord
{
    public required string Id { get; init; }
    public required string Name { get; init; }
    public string Device { get; init; } = "cpu";
    public int Gpus { get; init; }
    public long MemoryBytes { get; init; }
    public int CpuCores { get; init; }
    public string Version { get; init; } = "";
    public string Host { get; init; } = "";
    /// <summary>idle, busy, draining or lost.</summary>
    public string State { get; init; } = "idle";
    public string? TrialId { get; init; }
    public DateTimeOffset ConnectedAt { get; init; }
    public DateTimeOffset LastHeartbeat { get; init; }
}

/// <summary>One metric report of a trial. The step is the idempotency key.</summary>
public sealed record MetricPointRecord
{
    public long Step { get; init; }
    public int Epoch { get; init; }
    public IReadOnlyDictionary<string, double> Values { get; init; } = new Dictionary<string, double>();
    public DateTimeOffset Time { get; init; }
}

/// <summary>One line of a trial's log (see <see cref="IStateStore.AppendTrialLogAsync"/>).</summary>
public sealed record TrialLogLine
{
    /// <summary>Position in the trial's log, from 1, assigned by the store on append (ignored there).</summary>
    public long Seq { get; init; }
    public DateTimeOffset Time { get; init; }
    public string Text { get; init; } = "";
}

/// <summary>What <see cref="IStateStore.AppendTrialLogAsync"/> did.</summary>
public enum LogAppendResult
{
    /// <summary>Stored.</summary>
    Appended,
    /// <summary>The token is not the trial's current one: the writer lost the trial; nothing stored.</summary>
    StaleToken,
    /// <summary>No such trial.</summary>
    UnknownTrial,
}

/// <summary>What <see cref="IStateStore.AppendMetricAsync"/> did.</summary>
public enum MetricAppendResult
{
    /// <summary>Stored.</summary>
    Appended,
    /// <summary>A point with this step was already stored; nothing changed (a re-sent report).</summary>
    Duplicate,
    /// <summary>The token is not the trial's current one: the writer lost the trial; nothing stored.</summary>
    StaleToken,
    /// <summary>No such trial.</summary>
    UnknownTrial,
    /// <summary>The trial changed since it was read (its version moved on); nothing stored.</summary>
    Conflict,
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    UseStringEnumConverter = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(SweepRecord))]
[JsonSerializable(typeof(TrialRecord))]
[JsonSerializable(typeof(WorkerRecord))]
[JsonSerializable(typeof(MetricPointRecord))]
[JsonSerializable(typeof(TrialLogLine))]
public sealed partial class StateJson : JsonSerializerContext;

using System.ComponentModel.DataAnnotations;

namespace Orchestrator.Coordinator.Configuration;

/// <summary>Settings of the coordinator's work: leases, scheduling, limits, auth (configuration section "Coordinator").</summary>
public sealed class CoordinatorOptions : IValidatableObject
{
    /// <summary>Workers send a heartbeat this often.</summary>
    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromSeconds(2);
    /// <summary>A trial whose lease is not renewed for this long is re-queued (its worker is presumed dead).</summary>
    public TimeSpan LeaseTimeout { get; set; } = TimeSpan.FromSeconds(10);
    /// <summary>How often the scheduler looks for work even when nothing signalled it.</summary>
    public TimeSpan SchedulerInterval { get; set; } = TimeSpan.FromMilliseconds(500);
    /// <summary>Assignments per trial before it is marked failed.</summary>
    [Range(1, 1000, ErrorMessage = "must be from 1 to 1000")]
    public int MaxTrialAttempts { get; set; } = 3;
    /// <summary>Grid size ceiling at submit.</summary>
    [Range(1, int.MaxValue, ErrorMessage = "must be at least 1")]
    public int MaxGridPoints { get; set; } = 100_000;
    /// <summary>Largest gang a trial may ask for.</summary>
    [Range(1, 4096, ErrorMessage = "must be from 1 to 4096")]
    public int MaxWorkersPerTrial { get; set; } = 64;
    /// <summary>
    /// The coordinator's token (ORCH_TOKEN): it holds every role. When any token is set, every call
    /// must carry "authorization: Bearer &lt;token&gt;" of a token with the method's role
    /// (<see cref="Security.AccessRules"/>); with none set, the coordinator is open.
    /// </summary>
    public string? AuthToken { get; set; }
    /// <summary>Token of the worker role (ORCH_WORKER_TOKEN): runs trials, cannot read or change sweeps.</summary>
    public string? WorkerToken { get; set; }
    /// <summary>Token of the user role (ORCH_USER_TOKEN): submits, steers and reads sweeps, cannot act as a worker.</summary>
    public string? UserToken { get; set; }
    /// <summary>Token of the viewer role (ORCH_VIEWER_TOKEN): reads sweeps, trials, metrics, logs and checkpoints only.</summary>
    public string? ViewerToken { get; set; }
    /// <summary>Largest gRPC message accepted (bytes); checkpoints and data travel in chunks below it.</summary>
    [Range(64 * 1024, int.MaxValue, ErrorMessage = "must be at least 65536 bytes (checkpoint and data chunks are 262144)")]
    public int MaxMessageBytes { get; set; } = 4 * 1024 * 1024;

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (HeartbeatInterval <= TimeSpan.Zero)
            yield return new ValidationResult("must be longer than zero", [nameof(HeartbeatInterval)]);
        if (LeaseTimeout <= HeartbeatInterval)
            yield return new ValidationResult($"must be longer than the heartbeat interval ({HeartbeatInterval}), or every lease expires between heartbeats", [nameof(LeaseTimeout)]);
        if (SchedulerInterval <= TimeSpan.Zero)
            yield return new ValidationResult("must be longer than zero", [nameof(SchedulerInterval)]);
    }
}

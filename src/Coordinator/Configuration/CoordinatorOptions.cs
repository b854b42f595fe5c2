namespace Orchestrator.Coordinator.Configuration;

/// <summary>Settings of the coordinator (configuration section "Coordinator").</summary>
public sealed class CoordinatorOptions
{
    /// <summary>Workers send a heartbeat this often.</summary>
    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromSeconds(2);
    /// <summary>A trial whose lease is not renewed for this long is re-queued (its worker is presumed dead).</summary>
    public TimeSpan LeaseTimeout { get; set; } = TimeSpan.FromSeconds(10);
    /// <summary>How often the scheduler looks for work even when nothing signalled it.</summary>
    public TimeSpan SchedulerInterval { get; set; } = TimeSpan.FromMilliseconds(500);
    /// <summary>Assignments per trial before it is marked failed.</summary>
    public int MaxTrialAttempts { get; set; } = 3;
    /// <summary>Grid size ceiling at submit.</summary>
    public int MaxGridPoints { get; set; } = 100_000;
    /// <summary>Largest gang a trial may ask for.</summary>
    public int MaxWorkersPerTrial { get; set; } = 64;
    /// <summary>When set, every call must carry "authorization: Bearer &lt;token&gt;".</summary>
    public string? AuthToken { get; set; }
    /// <summary>Largest gRPC message accepted (bytes); checkpoints and data travel in chunks below it.</summary>
    public int MaxMessageBytes { get; set; } = 4 * 1024 * 1024;
}

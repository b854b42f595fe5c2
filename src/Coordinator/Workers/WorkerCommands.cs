namespace Orchestrator.Coordinator.Workers;

/// <summary>
/// What the coordinator tells a worker, as the domain decides it. The worker's stream (the gRPC
/// edge) maps each command to its protocol message; nothing here knows the wire.
/// </summary>
public abstract record WorkerCommand(string TrialId);

/// <summary>
/// Run one rank of a trial: the lease (trial, fencing token, rank, GPUs), what to train and how
/// the gang averages gradients.
/// </summary>
public sealed record TrialAssignment(string TrialId, long FencingToken, int Rank, IReadOnlyList<int> Gpus) : WorkerCommand(TrialId)
{
    public required string SweepId { get; init; }
    /// <summary>The complete trial spec (YAML), hyperparameters applied.</summary>
    public required string TrialYaml { get; init; }
    public int WorldSize { get; init; } = 1;
    /// <summary>Every rank's gradient-exchange endpoint, in rank order.</summary>
    public IReadOnlyList<string> PeerEndpoints { get; init; } = [];
    /// <summary>Resume from the trial's stored checkpoint.</summary>
    public bool Resume { get; init; }
    /// <summary>Assignment number (1 = first run).</summary>
    public int Attempt { get; init; }
    /// <summary>The sweep's resources.aggregation: "ring" or "coordinator".</summary>
    public string Aggregation { get; init; } = "ring";
    /// <summary>The sweep's resources.wire: "fp32" or "bf16".</summary>
    public string Wire { get; init; } = "fp32";
    /// <summary>The ranks' shared secret for this assignment: ring peers prove they hold it (empty: none).</summary>
    public ReadOnlyMemory<byte> RingSecret { get; init; }

    /// <summary>The device the rank trains on: its first GPU, or the CPU.</summary>
    public string Device => Gpus.Count > 0 ? $"cuda:{Gpus[0].ToString(System.Globalization.CultureInfo.InvariantCulture)}" : "cpu";
}

/// <summary>Stop a trial (cancelled, re-queued, stopped early, or its lease is no longer the worker's).</summary>
public sealed record StopOrder(string TrialId, string Reason) : WorkerCommand(TrialId)
{
    /// <summary>Stopped early: finish uploading the checkpoint of the epoch just ended, then stop before the next training step.</summary>
    public bool AfterCheckpoint { get; init; }
}

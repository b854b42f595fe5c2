using Google.Protobuf.WellKnownTypes;
using Orchestrator.Coordinator.Domain;
using Orchestrator.Coordinator.Workers;
using Orchestrator.Sweeps;
using Proto = Orchestrator.Protocol.V1;

namespace Orchestrator.Coordinator.Grpc;

/// <summary>The worker side of the mapping: capabilities, the commands a worker is sent, the outcomes it reports.</summary>
public static partial class Mapping
{
    public static Proto.Worker ToProto(WorkerConnection w) => new()
    {
        Id = w.Id,
        Name = w.Name,
        State = w.Draining ? "draining" : w.IsBusy ? "busy" : "idle",
        Capabilities = ToProto(w.Resources),
        TrialId = w.Trials.Keys.FirstOrDefault() ?? "",
        LastHeartbeat = Timestamp.FromDateTimeOffset(w.LastHeartbeat),
    };

    public static Proto.WorkerCapabilities ToProto(WorkerResources r)
    {
        var p = new Proto.WorkerCapabilities
        {
            Device = r.Device,
            Gpus = r.Gpus.Count,
            MemoryBytes = r.MemoryBytes,
            CpuCores = r.CpuCores,
            Version = r.Version,
            Host = r.Host,
        };
        p.Devices.AddRange(r.Gpus.Select(g => new Proto.WorkerDevice { Kind = "cuda", Index = g.Index, Name = g.Name, MemoryBytes = g.MemoryBytes }));
        return p;
    }

    /// <summary>
    /// A Hello's capabilities as the scheduler's resources. A worker that lists no devices but
    /// counts GPUs (an older worker) gets GPUs 0..n-1 of unknown name.
    /// </summary>
    public static WorkerResources FromProto(Proto.WorkerCapabilities? c)
    {
        if (c is null) return new WorkerResources();
        var gpus = c.Devices.Count > 0
            ? c.Devices.Where(d => d.Kind is "cuda" or "").Select(d => new GpuDevice(d.Index, d.Name, d.MemoryBytes)).DistinctBy(g => g.Index).ToList()
            : Enumerable.Range(0, Math.Max(0, c.Gpus)).Select(i => new GpuDevice(i)).ToList();
        return new WorkerResources
        {
            Device = gpus.Count > 0 ? "cuda" : string.IsNullOrEmpty(c.Device) ? "cpu" : c.Device,
            Gpus = gpus,
            MemoryBytes = c.MemoryBytes,
            CpuCores = c.CpuCores,
            Version = c.Version,
            Host = c.Host,
        };
    }

    /// <summary>
    /// A command as the message on the worker's stream. <paramref name="gradientEndpoint"/> and
    /// <paramref name="gradientSocketPath"/> are the coordinator's gradient socket (null when off),
    /// named in assignments whose gang averages through the coordinator.
    /// </summary>
    public static Proto.CoordinatorMessage ToProto(WorkerCommand command, string? gradientEndpoint, string? gradientSocketPath) => command switch
    {
        TrialAssignment a => new Proto.CoordinatorMessage { Assign = ToProto(a, gradientEndpoint, gradientSocketPath) },
        StopOrder s => new Proto.CoordinatorMessage { Stop = new Proto.StopTrial { TrialId = s.TrialId, Reason = s.Reason, AfterCheckpoint = s.AfterCheckpoint } },
        _ => throw new ArgumentOutOfRangeException(nameof(command), command, "unknown worker command"),
    };

    public static Proto.AssignTrial ToProto(TrialAssignment a, string? gradientEndpoint, string? gradientSocketPath)
    {
        var lease = new Proto.TrialLease { TrialId = a.TrialId, FencingToken = a.FencingToken, Rank = a.Rank };
        lease.Gpus.AddRange(a.Gpus);
        var message = new Proto.AssignTrial
        {
            Lease = lease,
            Device = a.Device,
            SweepId = a.SweepId,
            TrialYaml = a.TrialYaml,
            Rank = a.Rank,
            WorldSize = a.WorldSize,
            Resume = a.Resume,
            Attempt = a.Attempt,
            Aggregation = ToAggregationMode(a.Aggregation),
            Wire = ToWireFormat(a.Wire),
            RingSecret = Google.Protobuf.ByteString.CopyFrom(a.RingSecret.Span),
        };
        if (message.Aggregation == Proto.AggregationMode.Coordinator && gradientEndpoint is not null)
        {
            message.GradientEndpoint = gradientEndpoint;
            message.GradientSocketPath = gradientSocketPath ?? "";
        }
        message.PeerEndpoints.AddRange(a.PeerEndpoints);
        return message;
    }

    /// <summary>A sweep's resources.aggregation (<see cref="SweepNames.Aggregations"/>) as the protocol's enum.</summary>
    public static Proto.AggregationMode ToAggregationMode(string aggregation) => aggregation switch
    {
        "ring" => Proto.AggregationMode.Ring,
        "coordinator" => Proto.AggregationMode.Coordinator,
        _ => throw new ArgumentOutOfRangeException(nameof(aggregation), aggregation, "unknown aggregation mode"),
    };

    /// <summary>A sweep's resources.wire (<see cref="SweepNames.WireFormats"/>) as the protocol's enum.</summary>
    public static Proto.GradientWireFormat ToWireFormat(string wire) => wire switch
    {
        "fp32" => Proto.GradientWireFormat.Fp32,
        "bf16" => Proto.GradientWireFormat.Bf16,
        _ => throw new ArgumentOutOfRangeException(nameof(wire), wire, "unknown wire format"),
    };

    /// <summary>A reported outcome in the domain's terms; null for OUTCOME_UNSPECIFIED (or one this coordinator does not know), which is ignored.</summary>
    public static TrialOutcome? FromProto(Proto.TrialStatus.Types.Outcome outcome) => outcome switch
    {
        Proto.TrialStatus.Types.Outcome.Started => TrialOutcome.Started,
        Proto.TrialStatus.Types.Outcome.Completed => TrialOutcome.Completed,
        Proto.TrialStatus.Types.Outcome.Failed => TrialOutcome.Failed,
        Proto.TrialStatus.Types.Outcome.FailedPermanently => TrialOutcome.FailedPermanently,
        Proto.TrialStatus.Types.Outcome.Stopped => TrialOutcome.Stopped,
        Proto.TrialStatus.Types.Outcome.RankDone => TrialOutcome.RankDone,
        Proto.TrialStatus.Types.Outcome.Drained => TrialOutcome.Drained,
        _ => null,
    };
}

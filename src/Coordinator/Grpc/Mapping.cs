using Google.Protobuf.WellKnownTypes;
using Orchestrator.Coordinator.Checkpoints;
using Orchestrator.Coordinator.Domain;
using Orchestrator.Coordinator.Scheduling;
using Orchestrator.Coordinator.State;
using Orchestrator.Sweeps;
using Proto = Orchestrator.Protocol.V1;

namespace Orchestrator.Coordinator.Grpc;

/// <summary>
/// Domain records, decisions and events ↔ protocol messages: the one place that knows both. Pure
/// functions (the checkpoint store and pending reasons are read, never changed); the worker side is
/// in Mapping.Workers.cs.
/// </summary>
public static partial class Mapping
{
    public static Proto.Sweep ToProto(SweepRecord s, TrialCounts? counts, ValidatedSweep? spec)
    {
        var p = new Proto.Sweep
        {
            Id = s.Id,
            Name = s.Name,
            State = s.State switch
            {
                SweepStatus.Pending => Proto.SweepState.Pending,
                SweepStatus.Running => Proto.SweepState.Running,
                SweepStatus.Completed => Proto.SweepState.Completed,
                SweepStatus.Failed => Proto.SweepState.Failed,
                SweepStatus.Cancelled => Proto.SweepState.Cancelled,
                SweepStatus.Paused => Proto.SweepState.Paused,
                _ => Proto.SweepState.Unspecified,
            },
            SpecYaml = s.SpecYaml,
            BestTrialId = s.BestTrialId ?? "",
            CreatedAt = Timestamp.FromDateTimeOffset(s.CreatedAt),
            Message = s.Message ?? "",
        };
        if (s.BestMetric is { } best) p.BestMetric = best;
        if (s.FinishedAt is { } f) p.FinishedAt = Timestamp.FromDateTimeOffset(f);
        if (spec is not null)
        {
            p.ObjectiveMetric = spec.ObjectiveMetric;
            p.Goal = spec.Maximize ? Proto.Goal.Maximize : Proto.Goal.Minimize;
            p.MaxTrials = spec.MaxTrials;
            p.Epochs = spec.Epochs;
        }
        if (counts is { } c)
        {
            p.TrialsTotal = (int)c.Total;
            p.TrialsPending = (int)c.Pending;
            p.TrialsRunning = (int)c.Running;
            p.TrialsCompleted = (int)c.Completed;
            p.TrialsFailed = (int)c.Failed;
            p.TrialsCancelled = (int)c.Cancelled;
            p.TrialsStopped = (int)c.Stopped;
        }
        return p;
    }

    public static Proto.Trial ToProto(TrialRecord t, CheckpointStore? checkpoints, PendingReasons? reasons = null)
    {
        var p = new Proto.Trial
        {
            Id = t.Id,
            SweepId = t.SweepId,
            Index = t.Index,
            State = ToProto(t.State),
            Attempt = t.Attempt,
            Epoch = t.Epoch,
            Epochs = t.Epochs,
            HasCheckpoint = checkpoints is not null && (checkpoints.Exists(t.SweepId, t.Id, CheckpointSlot.Best) || checkpoints.Exists(t.SweepId, t.Id, CheckpointSlot.Latest)),
            Message = t.Message ?? "",
            PendingReason = reasons?.Of(t)?.Text ?? "",
        };
        foreach (var (k, v) in t.Parameters) p.Parameters[k] = v;
        p.WorkerIds.AddRange(t.WorkerIds);
        if (t.LatestMetric is { } latest) p.LatestMetric = latest;
        if (t.BestMetric is { } best) p.BestMetric = best;
        p.BestEpoch = t.BestEpoch;
        if (t.StartedAt is { } s) p.StartedAt = Timestamp.FromDateTimeOffset(s);
        if (t.FinishedAt is { } f) p.FinishedAt = Timestamp.FromDateTimeOffset(f);
        return p;
    }

    public static Proto.TrialState ToProto(TrialStatus state) => state switch
    {
        TrialStatus.Pending => Proto.TrialState.Pending,
        TrialStatus.Running => Proto.TrialState.Running,
        TrialStatus.Completed => Proto.TrialState.Completed,
        TrialStatus.Failed => Proto.TrialState.Failed,
        TrialStatus.Cancelled => Proto.TrialState.Cancelled,
        TrialStatus.Stopped => Proto.TrialState.Stopped,
        _ => Proto.TrialState.Unspecified,
    };

    public static TrialStatus FromProto(Proto.TrialState state) => state switch
    {
        Proto.TrialState.Pending => TrialStatus.Pending,
        Proto.TrialState.Running => TrialStatus.Running,
        Proto.TrialState.Completed => TrialStatus.Completed,
        Proto.TrialState.Failed => TrialStatus.Failed,
        Proto.TrialState.Cancelled => TrialStatus.Cancelled,
        Proto.TrialState.Stopped => TrialStatus.Stopped,
        _ => throw new ArgumentOutOfRangeException(nameof(state), state, "no such trial state"),
    };

    public static Proto.MetricPoint ToProto(string trialId, MetricPointRecord m)
    {
        var p = new Proto.MetricPoint { TrialId = trialId, Step = m.Step, Epoch = m.Epoch, Time = Timestamp.FromDateTimeOffset(m.Time) };
        foreach (var (k, v) in m.Values) p.Values[k] = v;
        return p;
    }

    public static MetricPointRecord FromProto(Proto.MetricPoint p, DateTimeOffset now) => new()
    {
        Step = p.Step,
        Epoch = p.Epoch,
        Values = p.Values.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal),
        Time = p.Time is null ? now : p.Time.ToDateTimeOffset(),
    };

    public static Proto.TrialLogLine ToProto(TrialLogLine line) =>
        new() { Seq = line.Seq, Time = Timestamp.FromDateTimeOffset(line.Time), Text = line.Text };

    public static TrialLogLine FromProto(Proto.TrialLogLine line, DateTimeOffset now) =>
        new() { Time = line.Time is null ? now : line.Time.ToDateTimeOffset(), Text = line.Text };
}

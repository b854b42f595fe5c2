using Google.Protobuf.WellKnownTypes;
using Orchestrator.Protocol.V1;

namespace Orchestrator.Worker.Host;

/// <summary>
/// A trial's log as this worker writes it: each line goes to the coordinator at once, through the
/// worker's stream and in order with the trial's reports and outcome, where `orch logs TRIAL` reads
/// it. Lines of ranks other than 0 say which rank wrote them.
/// </summary>
internal sealed class TrialLogWriter(ITrialHost host, TrialLease lease, int rank)
{
    public void Write(string text)
    {
        var log = new TrialLog { Lease = lease };
        log.Lines.Add(new TrialLogLine { Time = Timestamp.FromDateTimeOffset(DateTimeOffset.UtcNow), Text = rank == 0 ? text : $"[rank {rank}] {text}" });
        host.Send(new WorkerMessage { Log = log });
    }
}

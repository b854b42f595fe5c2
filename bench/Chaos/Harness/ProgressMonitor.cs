using System.Diagnostics;
using Grpc.Core;
using Orchestrator.Protocol.V1;

namespace Orchestrator.Bench.Chaos;

/// <summary>
/// Watches the sweeps as a user would, through the coordinator's API, once a second. Progress is a
/// trial reaching an epoch it had not reached before, or completing; a poll that gets no answer
/// (coordinator or Redis down) sees none. Records the longest time without progress, and ends
/// the run (cancels <c>done</c>) when every sweep has ended, when nothing moved for well past the
/// stall limit, or at the run's timeout.
/// </summary>
internal sealed class ProgressMonitor(ChaosCluster cluster, IReadOnlyList<string> sweepIds, ChaosOptions options)
{
    private readonly Dictionary<string, (int Epoch, bool Completed)> _seen = [];

    /// <summary>The longest time without progress (up to the sweeps' end).</summary>
    public TimeSpan LongestStall { get; private set; }

    /// <summary>Whether every sweep reached a final state before the run was ended.</summary>
    public bool Finished { get; private set; }

    /// <summary>Why the run was ended early, if it was.</summary>
    public string? EndedEarly { get; private set; }

    public async Task RunAsync(CancellationTokenSource done, CancellationToken ct)
    {
        var run = Stopwatch.StartNew();
        var sinceProgress = Stopwatch.StartNew();
        // Past the limit the invariant is already broken; waiting a little longer tells a slow
        // recovery from a hang in the logs without spending the whole timeout.
        var giveUp = options.StallLimit + TimeSpan.FromSeconds(30);
        try
        {
            while (true)
            {
                await Task.Delay(1000, ct).ConfigureAwait(false);
                var (moved, finished) = await PollAsync(ct).ConfigureAwait(false);
                if (moved) sinceProgress.Restart();
                if (sinceProgress.Elapsed > LongestStall) LongestStall = sinceProgress.Elapsed;
                if (finished)
                {
                    Finished = true;
                    return;
                }
                if (sinceProgress.Elapsed > giveUp)
                {
                    EndedEarly = $"no progress for {sinceProgress.Elapsed.TotalSeconds:F0} s";
                    return;
                }
                if (run.Elapsed > options.RunTimeout)
                {
                    EndedEarly = $"not finished after {run.Elapsed.TotalSeconds:F0} s";
                    return;
                }
            }
        }
        finally
        {
            await done.CancelAsync().ConfigureAwait(false);
        }
    }

    private async Task<(bool Moved, bool Finished)> PollAsync(CancellationToken ct)
    {
        var moved = false;
        var finished = true;
        try
        {
            foreach (var id in sweepIds)
            {
                var deadline = DateTime.UtcNow.AddSeconds(3);
                var trials = await cluster.Sweeps.ListTrialsAsync(new ListTrialsRequest { SweepId = id }, deadline: deadline, cancellationToken: ct).ConfigureAwait(false);
                foreach (var t in trials.Trials)
                {
                    var completed = t.State == TrialState.Completed;
                    _seen.TryGetValue(t.Id, out var before);
                    if (t.Epoch > before.Epoch || (completed && !before.Completed)) moved = true;
                    _seen[t.Id] = (Math.Max(t.Epoch, before.Epoch), before.Completed || completed);
                }
                var sweep = await cluster.Sweeps.GetSweepAsync(new GetSweepRequest { SweepId = id }, deadline: deadline, cancellationToken: ct).ConfigureAwait(false);
                finished &= sweep.State is SweepState.Completed or SweepState.Failed or SweepState.Cancelled;
            }
            return (moved, finished);
        }
        catch (RpcException)
        {
            return (moved, false);
        }
    }
}

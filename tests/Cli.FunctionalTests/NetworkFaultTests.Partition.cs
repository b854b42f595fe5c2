using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Orchestrator.Protocol.V1;

namespace Orchestrator.Cli.FunctionalTests;

/// <summary>A worker's host partitioned away for longer than its lease, then reconnected.</summary>
public sealed partial class NetworkFaultTests
{
    private const string PartitionYaml = """
        name: netns-partition
        data: { name: fashion-mnist, limitTrain: 1200, limitTest: 300 }
        model: { name: simple-cnn }
        trial: { epochs: 3, batchSize: 64, optimizer: { name: sgd, momentum: 0.9 } }
        parameters:
          optimizer.lr: { values: [0.05] }
        search: { method: grid }
        objective: { metric: val_accuracy, goal: maximize }
        """;

    private const string AfterwardsYaml = """
        name: netns-afterwards
        data: { name: fashion-mnist, limitTrain: 300, limitTest: 100 }
        model: { name: simple-cnn }
        trial: { epochs: 1, batchSize: 64 }
        parameters:
          optimizer.lr: { values: [0.05] }
        search: { method: grid }
        """;

    /// <summary>How long a worker takes at most to notice a silent link (its keep-alive ping delay and timeout).</summary>
    private static readonly TimeSpan WorkerKeepAlive = Orchestrator.Worker.Host.WorkerAgent.KeepAlivePingDelay + Orchestrator.Worker.Host.WorkerAgent.KeepAlivePingTimeout;

    /// <summary>How many times the worker was welcomed on a new stream.</summary>
    private int Streams(OrchService worker, string id) =>
        worker.Output.Split('\n').Count(l => l.Contains($"Connected to {Address} as {id}", StringComparison.Ordinal));

    [Fact]
    public async Task A_worker_cut_off_past_its_lease_loses_its_trial_to_another_host_notices_registers_again_with_its_stale_writes_refused_and_takes_new_work()
    {
        var hosts = _network.Hosts;
        var workers = new[] { StartWorker(hosts[0], "w1"), StartWorker(hosts[1], "w2") };
        var id = await SubmitAsync("partition.yaml", PartitionYaml);

        // Cut off whichever worker runs the trial once an epoch's checkpoint is stored (so it resumes, not restarts).
        var trial = await EventuallyAsync(async () =>
        {
            var t = (await TrialsAsync(id)).SingleOrDefault(t => t.State == TrialState.Running);
            return t is null ? null : await StoredTrialAsync(t.Id) is { CheckpointEpoch: >= 1, WorkerIds.Count: 1 } stored ? stored : null;
        }, TimeSpan.FromMinutes(3), "a first epoch and its checkpoint");
        var victim = trial.WorkerIds[0] == "w1" ? 0 : 1;
        string victimId = $"w{victim + 1}", otherId = $"w{2 - victim}";
        // Timed from before the rule goes in (starting nft can take a while on a loaded machine).
        var cut = Stopwatch.StartNew();
        hosts[victim].Partition();

        // Past the lease the trial goes back to the queue and resumes on the other host, from the checkpoint.
        var moved = await EventuallyAsync(async () => (await TrialsAsync(id))
            .SingleOrDefault(t => t.Id == trial.Id && t.State == TrialState.Running && t.Attempt >= 2 && t.WorkerIds.Contains(otherId)),
            TimeSpan.FromSeconds(60), $"trial {trial.Id} resuming on {otherId}");
        var resumedAfter = cut.Elapsed;
        // Because its lease ran out, nothing else (the lease runs from the last heartbeat that got through).
        await EventuallyAsync(() => Task.FromResult(_coordinator.Output.Contains($"Trial {trial.Id} re-queued: lease expired (no heartbeat from {victimId})", StringComparison.Ordinal) ? "" : null),
            TimeSpan.FromSeconds(10), "the coordinator logging the expired lease");

        // The cut-off worker trains on under its lost lease. Its unanswered keep-alive ping tells it
        // the link is silent: it drops the connection and tries to reconnect, in vain until the link returns.
        await EventuallyAsync(() => Task.FromResult(workers[victim].Output.Contains("unreachable", StringComparison.Ordinal) ? "" : null),
            WorkerKeepAlive + TimeSpan.FromSeconds(30), $"{victimId} noticing that the coordinator does not answer");
        // The link returns as soon as the worker noticed (timed from before nft runs, as the cut).
        var partitioned = cut.Elapsed;
        hosts[victim].Reconnect();

        // It registers again; its Hello claims the trial under the old token, which is refused, and
        // so is anything else it sent under that token (a checkpoint upload, reports, the outcome).
        await EventuallyAsync(() => Task.FromResult(Streams(workers[victim], victimId) >= 2 ? "" : null),
            TimeSpan.FromSeconds(60), $"{victimId} connecting again");
        var rejoinedAfter = cut.Elapsed - partitioned;
        var refused = await EventuallyAsync(async () => await StaleWritesRefusedAsync() is var n && n > 0 ? n.ToString(CultureInfo.InvariantCulture) : null,
            TimeSpan.FromSeconds(60), "the coordinator refusing the cut-off worker's stale writes");
        // Stream messages name the worker; a checkpoint upload (a call of its own) its address.
        Assert.Matches($"Refused a [a-z]+ for trial {trial.Id} from (?:{victimId}|ipv4:{Regex.Escape(hosts[victim].Address)}:[0-9]+): fencing token {trial.FencingToken} is stale",
            _coordinator.Output);

        var sweep = await EndedAsync(id, TimeSpan.FromMinutes(4));
        Assert.True(sweep.State == SweepState.Completed, $"sweep {sweep.State}: {sweep.Message}\n{Everything()}");
        await AssertEveryEpochRecordedOnceAsync(trial.Id, 3);
        var stored = await StoredTrialAsync(trial.Id);
        Assert.True(stored!.Attempt == moved.Attempt, $"trial {trial.Id} ran {stored.Attempt} times, expected {moved.Attempt}\n{Everything()}");

        // It rejoined: with the other worker gone, the next trial can only run on it.
        await workers[1 - victim].KillAsync();
        var next = await SubmitAsync("afterwards.yaml", AfterwardsYaml);
        var afterwards = await EndedAsync(next, TimeSpan.FromMinutes(3));
        Assert.True(afterwards.State == SweepState.Completed, $"sweep {afterwards.State}: {afterwards.Message}\n{Everything()}");
        var nextTrial = (await TrialsAsync(next)).Single();
        Assert.True(workers[victim].Output.Contains(nextTrial.Id, StringComparison.Ordinal), $"{victimId} did not run {nextTrial.Id}\n{Everything()}");
        Assert.False(workers[victim].HasExited, $"{victimId} exited\n{Everything()}");

        Record($"partition: cut off {victimId} for {Seconds(partitioned)} s (lease {Seconds(LeaseTimeout)} s); trial resumed on {otherId} after {Seconds(resumedAfter)} s; " +
               $"{victimId} noticed the silent link then and registered again {Seconds(rejoinedAfter)} s after it returned; " +
               $"{refused} stale writes refused; epochs 1-3 recorded once; {victimId} ran the next trial");
    }
}

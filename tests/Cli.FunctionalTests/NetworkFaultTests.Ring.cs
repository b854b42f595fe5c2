using System.Diagnostics;
using System.Text.RegularExpressions;
using Orchestrator.Protocol.V1;

namespace Orchestrator.Cli.FunctionalTests;

/// <summary>A data-parallel trial whose ring spans two hosts, over lossy, slow links, then with the ring's port cut.</summary>
public sealed partial class NetworkFaultTests
{
    /// <summary>The ring's default timeout (RingAllReduceOptions.Timeout): a neighbour silent this long fails the step.</summary>
    private static readonly TimeSpan RingTimeout = TimeSpan.FromSeconds(10);

    /// <summary>Both workers' gradient port (each in its own namespace, so one number serves both).</summary>
    private const int RingPort = 7100;

    private const string RingYaml = """
        name: netns-ring
        data: { name: fashion-mnist, limitTrain: 960, limitTest: 200 }
        model: { name: simple-cnn }
        trial: { epochs: 3, batchSize: 32 }
        parameters:
          optimizer.lr: { values: [0.03] }
        search: { method: grid }
        resources: { workers: 2, aggregation: ring }
        """;

    [Fact]
    public async Task A_ring_across_two_hosts_trains_over_lossy_slow_links_and_a_cut_ring_fails_its_step_within_the_timeout_then_resumes()
    {
        var hosts = _network.Hosts;
        foreach (var host in hosts)
        {
            host.Throttle("200mbit");
            host.Lose(2);
        }
        StartWorker(hosts[0], "w1", RingPort);
        StartWorker(hosts[1], "w2", RingPort);
        var id = await SubmitAsync("ring.yaml", RingYaml);
        var trial = await EventuallyAsync(async () =>
        {
            var t = (await TrialsAsync(id)).SingleOrDefault(t => t.State == TrialState.Running && t.WorkerIds.Count == 2);
            return t is null ? null : await StoredTrialAsync(t.Id) is { CheckpointEpoch: >= 1 } stored ? stored : null;
        }, TimeSpan.FromMinutes(3), "both ranks finishing an epoch over the lossy links and its checkpoint stored");
        var firstEpoch = await AssertPointsAsync(trial.Id);
        Assert.True(firstEpoch[0].Values["world_size"] == 2, Everything());

        // Cut only the ring (the gradient port) of one host; the coordinator link stays up, so the
        // leases hold and only the collective can notice. The step stalls and must fail, not hang.
        var cut = Stopwatch.StartNew();
        hosts[1].BlockPort(RingPort);
        var retried = await EventuallyAsync(async () => (await TrialsAsync(id)).SingleOrDefault(t => t.Id == trial.Id && t.Attempt > trial.Attempt),
            RingTimeout + TimeSpan.FromSeconds(60), $"trial {trial.Id} failing its step and being retried");
        var failedAfter = cut.Elapsed;
        hosts[1].UnblockPort(RingPort);
        var requeue = Regex.Match(_coordinator.Output, $@"Trial {trial.Id} re-queued: failed on w\d: CollectiveException: All-reduce failed on rank \d of 2: [^\n]*");
        Assert.True(requeue.Success, $"no re-queue for a failed all-reduce in the coordinator's log\n{Everything()}");
        Assert.Matches(@"(sent nothing|accepted no data) for 10 s", requeue.Value);
        // The stall begins at the first step after the cut (an evaluation or an upload may come
        // first); the failure comes a ring timeout later, and the retry right after it.
        Assert.True(failedAfter < RingTimeout + TimeSpan.FromSeconds(20), $"the step failed {failedAfter} after the cut (ring timeout {RingTimeout})\n{Everything()}");

        var sweep = await EndedAsync(id, TimeSpan.FromMinutes(4));
        Assert.True(sweep.State == SweepState.Completed, $"sweep {sweep.State}: {sweep.Message}\n{Everything()}");
        var points = await AssertEveryEpochRecordedOnceAsync(trial.Id, 3);
        Assert.All(points, p => Assert.Equal(2, p.Values["world_size"]));
        Assert.Equal(retried.Attempt, (await StoredTrialAsync(trial.Id))!.Attempt);
        Record($"ring: 2 hosts at 200mbit with 2 % loss each way; ring port cut on host 2: the step failed and the trial was retried " +
               $"{Seconds(failedAfter)} s after the cut (ring timeout {Seconds(RingTimeout)} s); epochs 1-3 recorded once at world size 2; " +
               $"host 1 sent {hosts[0].BytesSent / 1_000_000} MB");
    }

    private async Task<IReadOnlyList<Orchestrator.Coordinator.Domain.MetricPointRecord>> AssertPointsAsync(string trialId)
    {
        await using var store = await Orchestrator.Coordinator.State.Redis.RedisStateStore.ConnectAsync(_redis.Configuration, _prefix, CancellationToken.None);
        var points = await store.GetMetricsAsync(trialId, CancellationToken.None);
        Assert.True(points.Count >= 1, $"trial {trialId} has no metric point\n{Everything()}");
        return points;
    }
}

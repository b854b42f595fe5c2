using System.Diagnostics.Metrics;
using Grpc.Core;
using Orchestrator.Protocol.V1;
using Orchestrator.TestSupport;
using Outcome = Orchestrator.Protocol.V1.TrialStatus.Types.Outcome;

namespace Orchestrator.Coordinator.FunctionalTests;

/// <summary>
/// GPU-aware scheduling through the real gRPC API, with fake workers that advertise fake GPUs:
/// where trials go, how many run at once, and why the rest wait (API, watch stream, metric).
/// The placement rule itself is unit-tested in Coordinator.UnitTests (FleetTests).
/// </summary>
public sealed class GpuSchedulingTests
{
    private static string GpuSweep(string name, int trials, int workers = 1, int gpusPerWorker = 1, int parallelTrials = 8) =>
        Specs.Grid(name, Specs.Lrs(trials), parallelTrials, workers: workers, minWorkers: workers, gpusPerWorker: gpusPerWorker);

    /// <summary>orch_trials_pending of this coordinator, by reason label.</summary>
    private static Dictionary<string, long> PendingByReason(TestCoordinator coordinator)
    {
        var values = new Dictionary<string, long>(StringComparer.Ordinal);
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (ReferenceEquals(instrument.Meter, coordinator.Metrics.Meter) && instrument.Name == "orch_trials_pending") l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
        {
            foreach (var tag in tags)
                if (tag.Key == "reason") values[(string)tag.Value!] = value;
        });
        listener.Start();
        listener.RecordObservableInstruments();
        return values;
    }

    private static Task WaitForPendingMetricAsync(TestCoordinator coordinator, string reason, long count) =>
        Eventually.WaitAsync(() => Task.FromResult(PendingByReason(coordinator)), m => m.GetValueOrDefault(reason) == count,
            $"orch_trials_pending{{reason=\"{reason}\"}} == {count}");

    [Fact]
    public async Task A_GPU_trial_is_never_assigned_to_a_CPU_worker_and_starts_when_a_GPU_worker_connects()
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        await using var cpu = await coordinator.ConnectWorkerAsync("cpu");
        var sweep = await coordinator.SubmitAsync(GpuSweep("gpu-only", trials: 1));
        var trialId = $"{sweep.Id}-t0000";

        var waiting = await coordinator.WaitForTrialAsync(sweep.Id, trialId, t => t.PendingReason.Length > 0);
        Assert.Equal(TrialState.Pending, waiting.State);
        Assert.Equal("needs 1 GPU on one worker; no connected worker has that many (most: 0)", waiting.PendingReason);
        await WaitForPendingMetricAsync(coordinator, "no_matching_worker", 1);
        // Several scheduler passes (every 100 ms here) with an idle CPU worker: nothing for it.
        await cpu.ExpectNothingAsync(TimeSpan.FromMilliseconds(700));

        await using var gpu = await coordinator.ConnectGpuWorkerAsync("gpu", gpus: 1);
        var assignment = await gpu.NextAssignmentAsync();

        Assert.Equal(trialId, assignment.Lease.TrialId);
        Assert.Equal("cuda:0", assignment.Device);
        Assert.Equal([0], assignment.Lease.Gpus);
        var running = await coordinator.WaitForTrialAsync(sweep.Id, trialId, t => t.State == TrialState.Running);
        Assert.Equal("", running.PendingReason);
        Assert.Equal(["gpu"], running.WorkerIds);
        await WaitForPendingMetricAsync(coordinator, "no_matching_worker", 0);
        await cpu.ExpectNothingAsync(TimeSpan.FromMilliseconds(300));
    }

    [Fact]
    public async Task A_worker_with_four_GPUs_runs_four_trials_at_once_each_on_its_own_GPU()
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        await using var gpu = await coordinator.ConnectGpuWorkerAsync("gpu4", gpus: 4);
        var sweep = await coordinator.SubmitAsync(GpuSweep("four", trials: 5, parallelTrials: 5));

        var running = new List<AssignTrial>();
        for (var i = 0; i < 4; i++) running.Add(await gpu.NextAssignmentAsync());

        Assert.Equal(["cuda:0", "cuda:1", "cuda:2", "cuda:3"], running.Select(a => a.Device).Order());
        Assert.Equal(4, running.Select(a => a.Lease.TrialId).Distinct().Count());
        Assert.All(running, a => Assert.Equal(a.Device, $"cuda:{a.Lease.Gpus.Single()}"));
        var fifth = await coordinator.WaitForTrialAsync(sweep.Id, $"{sweep.Id}-t0004", t => t.PendingReason.Length > 0);
        Assert.Equal("needs 1 worker with 1 GPU; 0 idle", fifth.PendingReason);
        await WaitForPendingMetricAsync(coordinator, "waiting_for_workers", 1);
        await gpu.ExpectNothingAsync(TimeSpan.FromMilliseconds(500));
        Assert.Equal(4, (await coordinator.TrialsAsync(sweep.Id)).Count(t => t.State == TrialState.Running));

        // The trial on cuda:2 ends: the waiting one gets that GPU, and only that one.
        var done = running.Single(a => a.Device == "cuda:2");
        await gpu.StatusAsync(done.Lease, Outcome.Completed);
        var next = await gpu.NextAssignmentAsync();

        Assert.Equal($"{sweep.Id}-t0004", next.Lease.TrialId);
        Assert.Equal("cuda:2", next.Device);
        await WaitForPendingMetricAsync(coordinator, "waiting_for_workers", 0);
    }

    [Fact]
    public async Task A_gang_larger_than_the_idle_GPU_fleet_stays_pending_with_its_reason_until_enough_GPUs_connect()
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        await using var first = await coordinator.ConnectGpuWorkerAsync("g1", gpus: 1);
        var sweep = await coordinator.SubmitAsync(GpuSweep("gang", trials: 1, workers: 2));
        using var watch = coordinator.Sweeps.WatchSweep(new WatchSweepRequest { SweepId = sweep.Id });

        var waiting = await NextTrialEventAsync(watch, t => t.PendingReason.Length > 0);
        Assert.Equal(TrialState.Pending, waiting.State);
        Assert.Equal("needs 2 workers with 1 GPU; 1 idle", waiting.PendingReason);
        Assert.Equal("needs 2 workers with 1 GPU; 1 idle", (await coordinator.TrialsAsync(sweep.Id)).Single().PendingReason);
        await WaitForPendingMetricAsync(coordinator, "waiting_for_workers", 1);
        // No partial gang: the one GPU stays free rather than held by half a trial.
        await first.ExpectNothingAsync(TimeSpan.FromMilliseconds(500));

        await using var second = await coordinator.ConnectGpuWorkerAsync("g2", gpus: 1);
        var ranks = new[] { await first.NextAssignmentAsync(), await second.NextAssignmentAsync() };

        Assert.Equal([0, 1], ranks.Select(r => r.Rank).Order());
        Assert.All(ranks, r => Assert.Equal((2, "cuda:0"), (r.WorldSize, r.Device)));
        var started = await NextTrialEventAsync(watch, t => t.State == TrialState.Running);
        Assert.Equal("", started.PendingReason);
        await WaitForPendingMetricAsync(coordinator, "waiting_for_workers", 0);
    }

    [Fact]
    public async Task Two_ranks_of_a_trial_share_a_two_GPU_worker_and_a_rank_that_ends_frees_only_its_GPU()
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        await using var pair = await coordinator.ConnectGpuWorkerAsync("pair", gpus: 2);
        var gang = await coordinator.SubmitAsync(GpuSweep("pair-gang", trials: 1, workers: 2));

        var ranks = new[] { await pair.NextAssignmentAsync(), await pair.NextAssignmentAsync() }.OrderBy(a => a.Rank).ToList();

        Assert.Equal(["cuda:0", "cuda:1"], ranks.Select(r => r.Device));
        Assert.Equal([0, 1], ranks.Select(r => r.Lease.Rank));
        // Each rank is reached on its own GPU's port.
        Assert.All(ranks, r => Assert.Equal(["127.0.0.1:10", "127.0.0.1:11"], r.PeerEndpoints));
        Assert.All(ranks, r => Assert.Equal(2, r.WorldSize));

        var single = await coordinator.SubmitAsync(GpuSweep("single", trials: 1));
        var waiting = await coordinator.WaitForTrialAsync(single.Id, $"{single.Id}-t0000", t => t.PendingReason.Length > 0);
        Assert.Equal("needs 1 worker with 1 GPU; 0 idle", waiting.PendingReason);

        await pair.StatusAsync(ranks[1].Lease, Outcome.RankDone);
        var next = await pair.NextAssignmentAsync();

        Assert.Equal($"{single.Id}-t0000", next.Lease.TrialId);
        Assert.Equal("cuda:1", next.Device);
        Assert.Equal(TrialState.Running, (await coordinator.TrialAsync(gang.Id, $"{gang.Id}-t0000")).State);
        await pair.StatusAsync(ranks[0].Lease, Outcome.Completed);
        await coordinator.WaitForSweepAsync(gang.Id, s => s.State == SweepState.Completed);
    }

    private static async Task<Trial> NextTrialEventAsync(AsyncServerStreamingCall<SweepEvent> watch, Func<Trial, bool> condition)
    {
        using var cts = new CancellationTokenSource(TaskTimeoutExtensions.Timeout);
        while (await watch.ResponseStream.MoveNext(cts.Token))
        {
            var e = watch.ResponseStream.Current;
            if (e.EventCase == SweepEvent.EventOneofCase.Trial && condition(e.Trial)) return e.Trial;
        }
        throw new InvalidOperationException("the watch stream ended");
    }
}

using Orchestrator.Protocol.V1;
using Orchestrator.TestSupport;
using Outcome = Orchestrator.Protocol.V1.TrialStatus.Types.Outcome;

namespace Orchestrator.Coordinator.FunctionalTests;

/// <summary>
/// A real redis-server killed mid-sweep and started again on the same port and append-only file,
/// for longer than a lease: the coordinator retries its workers' messages in place, the streams
/// stay open, and once Redis is back every report is stored once, in order, and no trial is taken
/// from its worker. (The 30 s outages of the chaos runs are bench material; a few seconds show the
/// same behaviour here.)
/// </summary>
public sealed class StoreOutageTests
{
    [Fact]
    public async Task Reports_and_outcomes_sent_while_Redis_is_down_are_stored_once_when_it_returns_and_no_lease_is_lost()
    {
        await using var redis = await RedisServer.StartAsync(CancellationToken.None).DefaultTimeout();
        await using var coordinator = await TestCoordinator.StartAsync(redis: redis.Configuration, redisPrefix: $"outage:{Guid.NewGuid():N}:");
        await using var w1 = await coordinator.ConnectWorkerAsync("w1");
        await using var w2 = await coordinator.ConnectWorkerAsync("w2");
        var sweep = await coordinator.SubmitAsync(Specs.Grid("outage", [0.01, 0.02], parallelTrials: 2));
        var a1 = await w1.NextAssignmentAsync();
        var a2 = await w2.NextAssignmentAsync();
        await w1.ReportAsync(a1.Lease, step: 1, epoch: 1, valAccuracy: 0.3);
        await w2.ReportAsync(a2.Lease, step: 1, epoch: 1, valAccuracy: 0.4);
        Assert.Empty(await w1.SyncAsync());
        Assert.Empty(await w2.SyncAsync());

        await redis.KillAsync(CancellationToken.None).DefaultTimeout();
        // The workers go on: the second epoch's reports, one trial's end and heartbeats, all while
        // nothing can be stored, for several lease timeouts.
        await w1.ReportAsync(a1.Lease, step: 2, epoch: 2, valAccuracy: 0.5);
        await w1.StatusAsync(a1.Lease, Outcome.Completed);
        await w2.ReportAsync(a2.Lease, step: 2, epoch: 2, valAccuracy: 0.6);
        // Longer than the Redis client's 5 s command timeout (so commands fail and are retried, not
        // only held until Redis is back) and than several lease timeouts.
        await Task.Delay(TimeSpan.FromSeconds(7));
        await redis.RestartAsync(CancellationToken.None).DefaultTimeout();

        // Re-sent after Redis returned, as a worker does after a reconnect: stored already, ignored.
        await w2.ReportAsync(a2.Lease, step: 2, epoch: 2, valAccuracy: 0.6);
        await w2.StatusAsync(a2.Lease, Outcome.Completed);

        var done = await coordinator.WaitForSweepAsync(sweep.Id, s => s.State is not (SweepState.Pending or SweepState.Running));
        Assert.Equal(SweepState.Completed, done.State);
        Assert.Equal(2, done.TrialsCompleted);
        Assert.Equal(a2.Lease.TrialId, done.BestTrialId);
        foreach (var t in await coordinator.TrialsAsync(sweep.Id))
        {
            // Never re-queued: the outage did not count against the leases.
            Assert.Equal(1, t.Attempt);
            var points = await coordinator.Store.GetMetricsAsync(t.Id, CancellationToken.None).DefaultTimeout();
            Assert.Equal([1L, 2L], points.Select(p => p.Step));
            Assert.Equal([1, 2], points.Select(p => p.Epoch));
        }
        // Nobody was told to stop: the leases held through the outage.
        Assert.DoesNotContain(await w1.SyncAsync(), m => m.KindCase == CoordinatorMessage.KindOneofCase.Stop);
        Assert.DoesNotContain(await w2.SyncAsync(), m => m.KindCase == CoordinatorMessage.KindOneofCase.Stop);
    }

    [Fact]
    public async Task A_checkpoint_upload_that_starts_while_Redis_is_down_is_held_and_stored_when_it_returns()
    {
        await using var redis = await RedisServer.StartAsync(CancellationToken.None).DefaultTimeout();
        await using var coordinator = await TestCoordinator.StartAsync(redis: redis.Configuration, redisPrefix: $"outage:{Guid.NewGuid():N}:");
        await using var worker = await coordinator.ConnectWorkerAsync("w1");
        var sweep = await coordinator.SubmitAsync(Specs.Grid("outage-upload", [0.01]));
        var assign = await worker.NextAssignmentAsync();
        // Larger than an HTTP/2 stream's flow-control window: the upload's writes wait on the
        // coordinator, which must hold the upload open rather than end it while chunks still come.
        var bytes = new byte[3_000_000];
        new Random(11).NextBytes(bytes);
        var point = new MetricPoint { TrialId = assign.Lease.TrialId, Step = 1, Epoch = 1 };
        point.Values.Add("val_accuracy", 0.5);

        await redis.KillAsync(CancellationToken.None).DefaultTimeout();
        var upload = CheckpointTests.UploadAsync(coordinator, assign.Lease, bytes, CheckpointTests.Sha(bytes), point);
        // Longer than the Redis client's 5 s command timeout: the coordinator's store calls fail and are retried.
        await Task.Delay(TimeSpan.FromSeconds(7));
        Assert.False(upload.IsCompleted, "the upload ended while Redis was down");
        await redis.RestartAsync(CancellationToken.None).DefaultTimeout();

        var response = await upload;
        Assert.Equal(bytes.Length, response.Size);
        var trial = await coordinator.TrialAsync(sweep.Id, assign.Lease.TrialId);
        Assert.True(trial.HasCheckpoint);
        // The epoch's metric point, carried by the checkpoint, was stored too.
        var points = await coordinator.Store.GetMetricsAsync(assign.Lease.TrialId, CancellationToken.None).DefaultTimeout();
        Assert.Equal([1L], points.Select(p => p.Step));
    }
}

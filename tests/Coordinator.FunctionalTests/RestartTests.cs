using System.Diagnostics;
using Orchestrator.Protocol.V1;
using Orchestrator.TestSupport;
using Outcome = Orchestrator.Protocol.V1.TrialStatus.Types.Outcome;

namespace Orchestrator.Coordinator.FunctionalTests;

/// <summary>One real redis-server for the restart tests.</summary>
public sealed class RedisFixture : IAsyncLifetime
{
    private RedisServer? _server;

    public RedisServer Server => _server ?? throw new InvalidOperationException("redis-server did not start; see the fixture's error.");

    public async Task InitializeAsync() => _server = await RedisServer.StartAsync(CancellationToken.None).DefaultTimeout();

    public async Task DisposeAsync()
    {
        if (_server is not null) await _server.DisposeAsync().AsTask().DefaultTimeout();
    }
}

/// <summary>A coordinator on the Redis store, stopped mid-sweep and started again.</summary>
public sealed class RestartTests(RedisFixture redis) : IClassFixture<RedisFixture>
{
    [Fact]
    public async Task A_coordinator_restarted_mid_sweep_on_the_same_Redis_keeps_every_trial_and_lease_and_completes_the_sweep()
    {
        var prefix = $"ftest:{Guid.NewGuid():N}:";
        var stateDir = Path.Combine(Path.GetTempPath(), "orch-ftest-" + Guid.NewGuid().ToString("N"));
        try
        {
            // First life: two of three trials run and report.
            var first = await TestCoordinator.StartAsync(stateDir: stateDir, redis: redis.Server.Configuration, redisPrefix: prefix);
            var w1 = await first.ConnectWorkerAsync("w1");
            var w2 = await first.ConnectWorkerAsync("w2");
            var sweep = await first.SubmitAsync(Specs.Grid("restart", [0.01, 0.02, 0.03], parallelTrials: 2));
            var a1 = await w1.NextAssignmentAsync();
            var a2 = await w2.NextAssignmentAsync();
            await w1.ReportAsync(a1.Lease, step: 1, epoch: 1, valAccuracy: 0.3);
            await w2.ReportAsync(a2.Lease, step: 1, epoch: 1, valAccuracy: 0.4);
            Assert.Empty(await w1.SyncAsync());
            Assert.Empty(await w2.SyncAsync());

            var stopping = Stopwatch.StartNew();
            await first.DisposeAsync();
            stopping.Stop();
            await w1.DisposeAsync();
            await w2.DisposeAsync();

            // Second life, same Redis prefix and state folder, another port.
            await using var second = await TestCoordinator.StartAsync(stateDir: stateDir, redis: redis.Server.Configuration, redisPrefix: prefix);
            var view = await second.GetSweepAsync(sweep.Id);
            Assert.Equal(SweepState.Running, view.State);
            Assert.Equal(3, view.TrialsTotal);
            var trials = await second.TrialsAsync(sweep.Id);
            Assert.Equal([TrialState.Running, TrialState.Running, TrialState.Pending], trials.Select(t => t.State));

            await using var r1 = await second.ConnectWorkerAsync("w1", [a1.Lease]);
            await using var r2 = await second.ConnectWorkerAsync("w2", [a2.Lease]);
            Assert.Empty(r1.Welcome.StopTrialIds);
            Assert.Empty(r2.Welcome.StopTrialIds);
            // Past the lease timeout the re-attached leases hold (heartbeats), with the same tokens.
            await r1.ExpectNothingAsync(TestCoordinator.LeaseTimeout * 2);
            trials = await second.TrialsAsync(sweep.Id);
            Assert.All(trials.Take(2), t => Assert.Equal(1, t.Attempt));

            // The workers re-send their last report (already stored), then go on.
            await r1.ReportAsync(a1.Lease, step: 1, epoch: 1, valAccuracy: 0.3);
            await r1.ReportAsync(a1.Lease, step: 2, epoch: 2, valAccuracy: 0.5);
            await r2.ReportAsync(a2.Lease, step: 1, epoch: 1, valAccuracy: 0.4);
            await r2.ReportAsync(a2.Lease, step: 2, epoch: 2, valAccuracy: 0.6);
            // r1 finishes first while r2 is still busy, so the last trial can only go to r1.
            await r1.StatusAsync(a1.Lease, Outcome.Completed);
            var a3 = await r1.NextAssignmentAsync();
            await r2.StatusAsync(a2.Lease, Outcome.Completed);
            Assert.Equal($"{sweep.Id}-t0002", a3.Lease.TrialId);
            await r1.ReportAsync(a3.Lease, step: 1, epoch: 1, valAccuracy: 0.55);
            await r1.StatusAsync(a3.Lease, Outcome.Completed);

            var done = await second.WaitForSweepAsync(sweep.Id, s => s.State is not (SweepState.Pending or SweepState.Running));
            Assert.Equal(SweepState.Completed, done.State);
            Assert.Equal(3, done.TrialsCompleted);
            Assert.Equal(a2.Lease.TrialId, done.BestTrialId);
            foreach (var lease in new[] { a1.Lease, a2.Lease })
            {
                var points = await second.Store.GetMetricsAsync(lease.TrialId, CancellationToken.None).DefaultTimeout();
                Assert.Equal([1L, 2L], points.Select(p => p.Step));
            }
            // Stopping a coordinator with connected workers is prompt (a pod gets ~30 s before SIGKILL).
            Assert.True(stopping.Elapsed < TimeSpan.FromSeconds(10), $"stopping took {stopping.Elapsed}");
        }
        finally
        {
            try { Directory.Delete(stateDir, recursive: true); }
            catch (IOException) { }
        }
    }
}

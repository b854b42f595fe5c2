using Grpc.Core;
using Orchestrator.Protocol.V1;
using Orchestrator.TestSupport;

namespace Orchestrator.Coordinator.FunctionalTests;

/// <summary>ListTrials in pages (by index, optionally one state), bulk cancel, and counts that come from the store's counters.</summary>
public sealed class TrialPagingTests
{
    private const string Grid = """
        name: paged
        data: { name: synthetic }
        model: { name: simple-cnn }
        parameters:
          optimizer.lr: { values: [0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.007] }
          batchSize: { values: [16, 32, 64] }
        search: { method: grid, maxTrials: 21, parallelTrials: 1 }
        """;

    [Fact]
    public async Task Pages_follow_the_index_a_state_filter_narrows_them_and_a_foreign_token_is_refused()
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        var sweep = await coordinator.SubmitAsync(Grid);
        await using var worker = await coordinator.ConnectWorkerAsync("w1");
        var assign = await worker.NextAssignmentAsync();

        var seen = new List<int>();
        var token = "";
        var pages = 0;
        do
        {
            var page = await coordinator.Sweeps.ListTrialsAsync(new ListTrialsRequest { SweepId = sweep.Id, PageSize = 8, PageToken = token }).ResponseAsync.DefaultTimeout();
            Assert.True(page.Trials.Count <= 8);
            seen.AddRange(page.Trials.Select(t => t.Index));
            token = page.NextPageToken;
            pages++;
        }
        while (token.Length > 0);
        Assert.Equal(Enumerable.Range(0, 21), seen);
        Assert.Equal(3, pages);

        var running = await coordinator.Sweeps.ListTrialsAsync(new ListTrialsRequest { SweepId = sweep.Id, PageSize = 100, State = TrialState.Running }).ResponseAsync.DefaultTimeout();
        Assert.Equal([assign.Lease.TrialId], running.Trials.Select(t => t.Id));
        var pending = await coordinator.Sweeps.ListTrialsAsync(new ListTrialsRequest { SweepId = sweep.Id, PageSize = 100, State = TrialState.Pending }).ResponseAsync.DefaultTimeout();
        Assert.Equal(20, pending.Trials.Count);
        Assert.All(pending.Trials, t => Assert.NotEmpty(t.PendingReason)); // parallelTrials reached, per sweep

        var bad = await Assert.ThrowsAsync<RpcException>(() => coordinator.Sweeps.ListTrialsAsync(new ListTrialsRequest { SweepId = sweep.Id, PageSize = 5, PageToken = "abc" }).ResponseAsync).DefaultTimeout();
        Assert.Equal(StatusCode.InvalidArgument, bad.StatusCode);
        Assert.Contains("page_token", bad.Status.Detail);
        var negative = await Assert.ThrowsAsync<RpcException>(() => coordinator.Sweeps.ListTrialsAsync(new ListTrialsRequest { SweepId = sweep.Id, PageSize = -1 }).ResponseAsync).DefaultTimeout();
        Assert.Equal(StatusCode.InvalidArgument, negative.StatusCode);
    }

    [Fact]
    public async Task Cancelling_a_sweep_cancels_every_pending_trial_at_once_and_stops_the_running_one()
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        var sweep = await coordinator.SubmitAsync(Grid);
        await using var worker = await coordinator.ConnectWorkerAsync("w1");
        var assign = await worker.NextAssignmentAsync();

        var cancelled = await coordinator.Sweeps.CancelSweepAsync(new CancelSweepRequest { SweepId = sweep.Id }).ResponseAsync.DefaultTimeout();

        Assert.Equal(SweepState.Cancelled, cancelled.State);
        Assert.Equal(21, cancelled.TrialsCancelled);
        Assert.Equal(0, cancelled.TrialsPending + cancelled.TrialsRunning);
        var stop = await worker.NextStopAsync();
        Assert.Equal(assign.Lease.TrialId, stop.TrialId);
        var trials = await coordinator.TrialsAsync(sweep.Id);
        Assert.All(trials, t => Assert.Equal(TrialState.Cancelled, t.State));
        Assert.All(trials, t => Assert.Equal("sweep cancelled", t.Message));
    }
}

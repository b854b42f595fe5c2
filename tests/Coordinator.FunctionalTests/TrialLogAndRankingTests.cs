using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Orchestrator.Coordinator.Logs;
using Orchestrator.Protocol.V1;
using Orchestrator.TestSupport;
using Outcome = Orchestrator.Protocol.V1.TrialStatus.Types.Outcome;

namespace Orchestrator.Coordinator.FunctionalTests;

/// <summary>Trial logs from the worker stream to GetTrialLog, and the sweep's trials ranked by ListBestTrials and chosen by GetBestTrial.</summary>
public sealed class TrialLogAndRankingTests
{
    private static WorkerMessage Log(TrialLease lease, params string[] lines)
    {
        var log = new TrialLog { Lease = lease.Clone() };
        foreach (var l in lines) log.Lines.Add(new TrialLogLine { Time = Timestamp.FromDateTime(DateTime.UtcNow), Text = l });
        return new WorkerMessage { Log = log };
    }

    private static async Task<List<TrialLogChunk>> ReadLogAsync(TestCoordinator coordinator, GetTrialLogRequest request)
    {
        using var call = coordinator.Sweeps.GetTrialLog(request, deadline: DateTime.UtcNow.AddSeconds(30));
        var chunks = new List<TrialLogChunk>();
        await foreach (var c in call.ResponseStream.ReadAllAsync()) chunks.Add(c);
        return chunks;
    }

    [Fact]
    public async Task Lines_a_worker_sends_are_served_in_order_cut_to_the_line_limit_and_followed_until_the_trial_ends()
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        await using var worker = await coordinator.ConnectWorkerAsync("w1");
        var sweep = await coordinator.SubmitAsync(Specs.Grid("logs", [0.05]));
        var a = await worker.NextAssignmentAsync();
        var request = new GetTrialLogRequest { SweepId = sweep.Id, TrialId = a.Lease.TrialId };

        // A follower from the start: it gets every line, then ends with the trial.
        using var following = coordinator.Sweeps.GetTrialLog(new GetTrialLogRequest(request) { Follow = true }, deadline: DateTime.UtcNow.AddSeconds(30));
        var followed = Task.Run(async () =>
        {
            var texts = new List<string>();
            await foreach (var c in following.ResponseStream.ReadAllAsync()) texts.AddRange(c.Lines.Select(l => l.Text));
            return texts;
        });

        await worker.SendAsync(Log(a.Lease, "attempt 1", new string('x', TrialLogs.MaxLineLength + 10)));
        await worker.SendAsync(Log(a.Lease, "epoch 1/1"));
        await worker.SyncAsync();
        var lines = (await ReadLogAsync(coordinator, request)).SelectMany(c => c.Lines).ToList();
        Assert.Equal([1L, 2, 3], lines.Select(l => l.Seq));
        Assert.Equal("attempt 1", lines[0].Text);
        Assert.Equal(new string('x', TrialLogs.MaxLineLength) + TrialLogs.CutMark, lines[1].Text);
        Assert.Equal(["epoch 1/1"], (await ReadLogAsync(coordinator, new GetTrialLogRequest(request) { AfterSeq = 2 })).SelectMany(c => c.Lines).Select(l => l.Text));
        Assert.False(followed.IsCompleted);

        await worker.SendAsync(Log(a.Lease, "completed"));
        await worker.StatusAsync(a.Lease, Outcome.Completed);
        var all = await followed.DefaultTimeout();
        Assert.Equal(["attempt 1", lines[1].Text, "epoch 1/1", "completed"], all);
    }

    [Fact]
    public async Task Logs_and_chosen_trials_outside_the_sweep_are_NOT_FOUND_and_top_n_below_one_is_INVALID_ARGUMENT()
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        var one = await coordinator.SubmitAsync(Specs.Grid("one", [0.05]));
        var other = await coordinator.SubmitAsync(Specs.Grid("other", [0.05]));

        var e = await Assert.ThrowsAsync<RpcException>(() => ReadLogAsync(coordinator, new GetTrialLogRequest { SweepId = one.Id, TrialId = other.Id + "-t0000" }));
        Assert.Equal(StatusCode.NotFound, e.StatusCode);
        Assert.Equal(StatusCode.NotFound, (await Assert.ThrowsAsync<RpcException>(() => coordinator.Sweeps.GetBestTrialAsync(
            new GetBestTrialRequest { SweepId = one.Id, TrialId = other.Id + "-t0000" }).ResponseAsync.DefaultTimeout())).StatusCode);
        e = await Assert.ThrowsAsync<RpcException>(() => coordinator.Sweeps.ListBestTrialsAsync(new ListBestTrialsRequest { SweepId = one.Id, TopN = 0 }).ResponseAsync.DefaultTimeout());
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("top_n", e.Status.Detail, StringComparison.Ordinal);
        // A chosen trial without a result is still shown; the ranking has no place for it.
        Assert.Equal(one.Id + "-t0000", (await coordinator.Sweeps.GetBestTrialAsync(new GetBestTrialRequest { SweepId = one.Id, TrialId = one.Id + "-t0000" }).ResponseAsync.DefaultTimeout()).Id);
        Assert.Empty((await coordinator.Sweeps.ListBestTrialsAsync(new ListBestTrialsRequest { SweepId = one.Id, TopN = 3 }).ResponseAsync.DefaultTimeout()).Trials);
    }

    [Fact]
    public async Task The_best_trials_are_ranked_by_the_objective_with_the_epoch_of_their_best_value_and_stopped_ones_count()
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        await using var w1 = await coordinator.ConnectWorkerAsync("w1");
        await using var w2 = await coordinator.ConnectWorkerAsync("w2");
        await using var w3 = await coordinator.ConnectWorkerAsync("w3");
        var sweep = await coordinator.SubmitAsync(Specs.Grid("rank", [0.01, 0.05, 0.1], parallelTrials: 3));
        var a1 = await w1.NextAssignmentAsync();
        var a2 = await w2.NextAssignmentAsync();
        await w3.NextAssignmentAsync(); // runs, and reports nothing

        await w1.ReportAsync(a1.Lease, step: 10, epoch: 1, valAccuracy: 0.70);
        await w1.ReportAsync(a1.Lease, step: 20, epoch: 2, valAccuracy: 0.65);
        await w2.ReportAsync(a2.Lease, step: 10, epoch: 1, valAccuracy: 0.50);
        await w2.ReportAsync(a2.Lease, step: 20, epoch: 2, valAccuracy: 0.80);
        await w2.StatusAsync(a2.Lease, Outcome.Stopped, "stopped early");
        await w1.StatusAsync(a1.Lease, Outcome.Completed);
        await Task.WhenAll(w1.SyncAsync(), w2.SyncAsync(), w3.SyncAsync());

        var top = (await coordinator.Sweeps.ListBestTrialsAsync(new ListBestTrialsRequest { SweepId = sweep.Id, TopN = 5 }).ResponseAsync.DefaultTimeout()).Trials;
        // The third trial has no result yet, so two; the stopped trial counts with its best value.
        Assert.Equal([(a2.Lease.TrialId, 0.80, 2), (a1.Lease.TrialId, 0.70, 1)], top.Select(t => (t.Id, t.BestMetric, t.BestEpoch)));
        var first = Assert.Single((await coordinator.Sweeps.ListBestTrialsAsync(new ListBestTrialsRequest { SweepId = sweep.Id, TopN = 1 }).ResponseAsync.DefaultTimeout()).Trials);
        Assert.Equal(a2.Lease.TrialId, first.Id);
    }
}

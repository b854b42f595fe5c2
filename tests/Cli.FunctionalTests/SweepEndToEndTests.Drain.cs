using System.Text.RegularExpressions;
using Orchestrator.Coordinator.Domain;
using Orchestrator.Coordinator.State.Redis;
using Orchestrator.Protocol.V1;

namespace Orchestrator.Cli.FunctionalTests;

/// <summary>
/// Workers asked to stop with real signals (SIGTERM, as Kubernetes sends; SIGINT, as Ctrl+C
/// sends): a drain finishes the epoch in progress and hands the trial back; a second signal or
/// --drain-timeout 0 stops at once.
/// </summary>
public sealed partial class SweepEndToEndTests
{
    // About 4 s an epoch with one thread here: long enough to signal inside one.
    private const string DrainYaml = """
        name: e2e-drain
        data: { name: fashion-mnist, limitTrain: 3000, limitTest: 300 }
        model: { name: simple-cnn }
        trial:
          epochs: 4
          batchSize: 64
        parameters:
          optimizer.lr: { values: [0.05] }
        search: { method: grid }
        """;

    private static readonly TimeSpan ExitBound = TimeSpan.FromMinutes(2);

    private async Task<string> SubmitAsync(string name, string yaml)
    {
        File.WriteAllText(Path.Combine(_dir, name), yaml);
        var r = await Task.Run(() => OrchProcess.Run(_dir, "submit", name, "--coordinator", Address, "--json"));
        Assert.True(r.ExitCode == 0, r + "\ncoordinator:\n" + _coordinator.Output);
        return r.LastJson.GetProperty("sweep").GetString()!;
    }

    private async Task<TrialRecord> StoredTrialAsync(string trialId)
    {
        await using var store = await RedisStateStore.ConnectAsync(_redis.Configuration, _prefix, CancellationToken.None);
        return (await store.GetTrialAsync(trialId, CancellationToken.None))!;
    }

    private async Task<IReadOnlyList<MetricPointRecord>> PointsAsync(string trialId)
    {
        await using var store = await RedisStateStore.ConnectAsync(_redis.Configuration, _prefix, CancellationToken.None);
        return await store.GetMetricsAsync(trialId, CancellationToken.None);
    }

    /// <summary>
    /// Waits until the trial's checkpoint of <paramref name="epoch"/> epochs is stored, then a
    /// second more: the best checkpoint follows the latest one, and then the next epoch is under way
    /// (its training alone takes a few seconds).
    /// </summary>
    private async Task<TrialRecord> InNextEpochAsync(string trialId, int epoch)
    {
        var t = await EventuallyAsync(async () =>
        {
            var t = await StoredTrialAsync(trialId);
            return t.State == Coordinator.Domain.TrialStatus.Running && t.CheckpointEpoch >= epoch ? t : null;
        }, TimeSpan.FromMinutes(2), $"trial {trialId} storing the checkpoint of epoch {epoch}");
        await Task.Delay(TimeSpan.FromSeconds(1));
        return t;
    }

    private Task WaitForOutputAsync(OrchService service, string text) => EventuallyAsync(
        () => Task.FromResult(service.Output.Contains(text, StringComparison.Ordinal) ? service.Output : null),
        TimeSpan.FromSeconds(30), $"the line \"{text}\"");

    private async Task AssertEpochsOnceAsync(string trialId, int epochs)
    {
        var points = await PointsAsync(trialId);
        Assert.Equal(Enumerable.Range(1, epochs), points.Select(p => p.Epoch));
        Assert.Equal(points.Count, points.Select(p => p.Step).Distinct().Count());
    }

    [Fact]
    public async Task A_SIGTERM_mid_epoch_finishes_that_epoch_hands_the_trial_back_at_once_and_another_worker_completes_it_with_every_epoch_once()
    {
        var w1 = StartWorker("w1");
        var id = await SubmitAsync("drain.yaml", DrainYaml);
        var trialId = $"{id}-t0000";
        await InNextEpochAsync(trialId, 1);

        w1.Signal("TERM");
        Assert.Equal(0, await w1.WaitForExitAsync(ExitBound));
        var draining = Regex.Match(w1.Output, $@"Draining: finishing epoch (\d+) of trial {trialId}, up to 600 s; send the signal again to stop now");
        Assert.True(draining.Success, w1.Output);
        var epoch = int.Parse(draining.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(epoch is 2 or 3, $"signalled during epoch {epoch} of 4:\n{w1.Output}");
        Assert.Contains($"trial {trialId} handed back (stopped after epoch {epoch}, the worker is shutting down); the worker exits", w1.Output);

        // The worker exited only once the coordinator had its last report: the epoch under way
        // when the signal came has its metrics and its checkpoint, and the trial is back in the
        // queue already (not after the 3 s lease), without using an attempt.
        var handedBack = await StoredTrialAsync(trialId);
        Assert.Equal(Coordinator.Domain.TrialStatus.Pending, handedBack.State);
        Assert.Equal(epoch, handedBack.Epoch);
        Assert.Equal(epoch, handedBack.CheckpointEpoch);
        Assert.Equal(1, handedBack.Attempt);
        Assert.Equal(1, handedBack.HandedBack);
        Assert.Equal(0, handedBack.CountedAttempts);
        Assert.StartsWith("handed back by w1", handedBack.Message, StringComparison.Ordinal);
        await AssertEpochsOnceAsync(trialId, epoch);

        var w2 = StartWorker("w2");
        var sweep = await CompletedAsync(id);
        Assert.Equal(1, sweep.TrialsCompleted);
        Assert.Contains($"Trial {trialId} attempt 2 started (epochs done: {epoch})", w2.Output);
        await AssertEpochsOnceAsync(trialId, 4);
    }

    [Fact]
    public async Task A_second_signal_or_a_zero_drain_timeout_stops_the_worker_at_once_losing_only_the_epoch_under_way()
    {
        var w1 = StartWorker("w1");
        var id = await SubmitAsync("drain.yaml", DrainYaml);
        var trialId = $"{id}-t0000";
        await InNextEpochAsync(trialId, 1);

        // Ctrl+C starts a drain, a second Ctrl+C ends it: epoch 2 never finishes.
        w1.Signal("INT");
        await WaitForOutputAsync(w1, $"Draining: finishing epoch 2 of trial {trialId}");
        w1.Signal("INT");
        Assert.Equal(130, await w1.WaitForExitAsync(ExitBound));
        Assert.Contains($"Stopping now (signalled again): epoch 2 of trial {trialId} will not finish", w1.Output);
        Assert.DoesNotContain("Drained in", w1.Output);
        Assert.Equal([1], (await PointsAsync(trialId)).Select(p => p.Epoch));

        // --drain-timeout 0: the first SIGTERM stops at once, as a worker without drain would.
        // The trial comes back when its lease runs out, resumed after epoch 1.
        var w2 = StartWorker("w2", "--drain-timeout", "0");
        var resumed = await EventuallyAsync(async () =>
        {
            var t = await StoredTrialAsync(trialId);
            return t.State == Coordinator.Domain.TrialStatus.Running && t.WorkerIds.Contains("w2") && w2.Output.Contains("attempt 2 started", StringComparison.Ordinal) ? t : null;
        }, TimeSpan.FromMinutes(2), "w2 resuming the trial");
        Assert.Equal(1, resumed.CheckpointEpoch);
        await Task.Delay(TimeSpan.FromSeconds(1)); // into epoch 2
        w2.Signal("TERM");
        Assert.Equal(143, await w2.WaitForExitAsync(ExitBound));
        Assert.DoesNotContain("Draining", w2.Output);
        Assert.Contains($"Stopping now (--drain-timeout 0): epoch 2 of trial {trialId} will not finish", w2.Output);
        Assert.Equal([1], (await PointsAsync(trialId)).Select(p => p.Epoch));

        // Stopped at once, both assignments count as attempts; a third worker finishes the trial with nothing twice.
        var w3 = StartWorker("w3");
        await CompletedAsync(id);
        var final = await StoredTrialAsync(trialId);
        Assert.Equal(3, final.Attempt);
        Assert.Equal(0, final.HandedBack);
        Assert.Contains("epochs done: 1", w3.Output, StringComparison.Ordinal);
        await AssertEpochsOnceAsync(trialId, 4);
    }

    [Fact]
    public async Task A_SIGTERM_to_one_rank_of_a_data_parallel_trial_stops_both_ranks_after_the_same_epoch_and_the_trial_resumes_on_the_other()
    {
        var w1 = StartWorker("w1");
        var w2 = StartWorker("w2");
        var id = await SubmitAsync("ddp-drain.yaml", """
            name: e2e-drain-data-parallel
            data: { name: fashion-mnist, limitTrain: 3000, limitTest: 300 }
            model: { name: simple-cnn }
            trial: { epochs: 3, batchSize: 32 }
            parameters:
              optimizer.lr: { values: [0.03] }
            search: { method: grid }
            resources: { workers: 2, minWorkers: 1 }
            """);
        var trialId = $"{id}-t0000";
        var running = await InNextEpochAsync(trialId, 1);
        Assert.Equal(2, running.WorkerIds.Count);

        // Only w1 is told to stop. Its peer must not wait for it in an all-reduce: both ranks
        // stop after the epoch under way, and w2 is free at once to take the trial on its own.
        w1.Signal("TERM");
        Assert.Equal(0, await w1.WaitForExitAsync(ExitBound));
        Assert.False(w2.HasExited);
        var draining = Regex.Match(w1.Output, $@"Draining: finishing epoch (\d+) of trial {trialId}");
        Assert.True(draining.Success, w1.Output);
        var epoch = int.Parse(draining.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);

        var sweep = await EventuallyAsync(async () =>
        {
            var s = await SweepAsync(id);
            return s.State is SweepState.Completed or SweepState.Failed ? s : null;
        }, TimeSpan.FromMinutes(4), "the sweep ending");
        Assert.Equal(SweepState.Completed, sweep.State);
        var final = await StoredTrialAsync(trialId);
        Assert.Equal(2, final.Attempt);
        Assert.Equal(1, final.HandedBack);
        Assert.Contains($"Trial {trialId} attempt 2 started (epochs done: {epoch})", w2.Output);
        var points = await PointsAsync(trialId);
        Assert.Equal([1, 2, 3], points.Select(p => p.Epoch));
        Assert.All(points.Take(epoch), p => Assert.Equal(2, p.Values["world_size"]));
        Assert.All(points.Skip(epoch), p => Assert.Equal(1, p.Values["world_size"]));
    }
}

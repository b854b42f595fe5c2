using Orchestrator.Coordinator.State.Redis;
using Orchestrator.Protocol.V1;

namespace Orchestrator.Cli.FunctionalTests;

/// <summary>Adaptive sweeps and the operations users run on a sweep, across real processes.</summary>
public sealed partial class SweepEndToEndTests
{
    [Fact]
    public async Task Asha_stops_hopeless_trials_after_their_first_epoch_and_the_sweep_ends_with_the_best_trial()
    {
        // One useful learning rate runs first (grid order, one trial at a time, so that the order in
        // which trials reach a rung is fixed); the two hopeless ones (too small to move the weights
        // in an epoch) reach the first rung after it and fall below the median recorded there (η = 2).
        File.WriteAllText(Path.Combine(_dir, "asha.yaml"), """
            name: e2e-asha
            data: { name: fashion-mnist, limitTrain: 1200, limitTest: 300 }
            model: { name: simple-cnn }
            trial:
              epochs: 4
              batchSize: 64
              optimizer: { name: sgd, momentum: 0.9 }
            parameters:
              optimizer.lr: { values: [0.05, 0.000001, 0.000002] }
            search:
              method: grid
              parallelTrials: 1
              earlyStopping: { method: asha, reductionFactor: 2, minEpochs: 1 }
            objective: { metric: val_accuracy, goal: maximize }
            """);
        StartWorker("w1");
        var submit = await Task.Run(() => OrchProcess.Run(_dir, "submit", "asha.yaml", "--coordinator", Address, "--json"));
        Assert.True(submit.ExitCode == 0, submit.ToString());
        var id = submit.LastJson.GetProperty("sweep").GetString()!;

        var sweep = await CompletedAsync(id);
        var trials = (await TrialsAsync(id)).OrderBy(t => t.Index).ToList();
        var summary = string.Join("; ", trials.Select(t => $"{t.Index} {t.State} epoch {t.Epoch} best {t.BestMetric:F3} {t.Message}"));
        Assert.True(trials[0] is { State: TrialState.Completed, Epoch: 4 }, summary);
        Assert.True(trials.Skip(1).All(t => t.State == TrialState.Stopped && t.Epoch == 1), summary);
        Assert.All(trials.Skip(1), t => Assert.StartsWith("stopped early by asha after epoch 1", t.Message, StringComparison.Ordinal));
        Assert.Equal((1, 2), (sweep.TrialsCompleted, sweep.TrialsStopped));
        Assert.Equal(trials[0].Id, sweep.BestTrialId);
        Assert.Contains("2 stopped early", sweep.Message, StringComparison.Ordinal);

        // A stopped trial keeps its metrics (epoch 1, once: it stopped before training epoch 2 to the
        // end) and the checkpoint of the epoch it was judged on: it evaluates to its reported metric.
        await using (var store = await RedisStateStore.ConnectAsync(_redis.Configuration, _prefix, CancellationToken.None))
        {
            foreach (var t in trials.Skip(1))
                Assert.Equal([1], (await store.GetMetricsAsync(t.Id, CancellationToken.None)).Select(p => p.Epoch));
        }
        var kept = trials[2];
        // The last trial's stop ended the sweep while its worker was uploading the judged epoch's
        // checkpoint: the coordinator waits for that upload before it answers.
        var download = await Task.Run(() => OrchProcess.Run(_dir, "best", id, "--trial", kept.Id, "--download", "stopped.ckpt", "--coordinator", Address));
        Assert.True(download.ExitCode == 0, download.ToString());
        var eval = await Task.Run(() => OrchProcess.Run(_dir, "eval", "--checkpoint", "stopped.ckpt", "--json"));
        Assert.True(eval.ExitCode == 0, eval.ToString());
        Assert.Equal(kept.BestMetric, eval.LastJson.GetProperty("accuracy").GetDouble(), 6);

        var listed = await Task.Run(() => OrchProcess.Run(_dir, "trials", id, "--coordinator", Address, "--json"));
        Assert.True(listed.ExitCode == 0, listed.ToString());
        // Best first: the completed trial, then the two stopped ones.
        Assert.Equal(["completed", "stopped", "stopped"],
            System.Text.Json.JsonDocument.Parse(listed.StdOut).RootElement.EnumerateArray().Select(t => t.GetProperty("state").GetString()));
    }

    [Fact]
    public async Task A_user_stops_a_trial_pauses_and_resumes_the_sweep_from_the_command_line()
    {
        StartWorker("w1");
        var id = await SubmitAsync();
        var running = await EventuallyAsync(async () => (await TrialsAsync(id)).FirstOrDefault(t => t.State == TrialState.Running && t.Epoch >= 1),
            TimeSpan.FromMinutes(2), "a trial finishing an epoch");

        var stop = await Task.Run(() => OrchProcess.Run(_dir, "stop", running.Id, "--coordinator", Address));
        Assert.True(stop.ExitCode == 0, stop.ToString());
        Assert.Contains("stopped early", stop.StdOut, StringComparison.Ordinal);
        // Its worker is free at once and starts the next trial.
        await EventuallyAsync(async () => (await TrialsAsync(id)).FirstOrDefault(t => t.State == TrialState.Running && t.Id != running.Id),
            TimeSpan.FromSeconds(30), "the worker taking the next trial");
        var again = await Task.Run(() => OrchProcess.Run(_dir, "stop", running.Id, "--coordinator", Address));
        Assert.Contains("already ended (stopped)", OrchProcess.AssertOneLineError(again, 1), StringComparison.Ordinal);

        var pause = await Task.Run(() => OrchProcess.Run(_dir, "pause", id, "--coordinator", Address, "--json"));
        Assert.True(pause.ExitCode == 0, pause.ToString());
        Assert.Equal("paused", pause.LastJson.GetProperty("state").GetString());
        var idle = await EventuallyAsync(async () =>
        {
            var ts = await TrialsAsync(id);
            return ts.All(t => t.State != TrialState.Running) ? ts : null;
        }, TimeSpan.FromSeconds(30), "the running trial going back to the queue");
        Assert.Contains(idle, t => t.State == TrialState.Pending && t.PendingReason.Contains("paused", StringComparison.Ordinal));
        await Task.Delay(2000);
        Assert.DoesNotContain(await TrialsAsync(id), t => t.State == TrialState.Running);

        var grid = await Task.Run(() => OrchProcess.Run(_dir, "extend", id, "--trials", "2", "--coordinator", Address));
        Assert.Contains("grid", OrchProcess.AssertOneLineError(grid, 1), StringComparison.Ordinal);

        var resume = await Task.Run(() => OrchProcess.Run(_dir, "resume", id, "--coordinator", Address));
        Assert.True(resume.ExitCode == 0, resume.ToString());
        var sweep = await CompletedAsync(id);
        Assert.Equal((3, 1), (sweep.TrialsCompleted, sweep.TrialsStopped));
    }

    [Fact]
    public async Task Extending_a_completed_sweep_by_epochs_trains_its_trial_on_from_its_checkpoint()
    {
        File.WriteAllText(Path.Combine(_dir, "short.yaml"), """
            name: e2e-extend
            data: { name: fashion-mnist, limitTrain: 1200, limitTest: 300 }
            model: { name: simple-cnn }
            trial:
              epochs: 1
              batchSize: 64
              optimizer: { name: sgd, momentum: 0.9 }
            parameters:
              optimizer.lr: { values: [0.05] }
            search: { method: grid }
            objective: { metric: val_accuracy, goal: maximize }
            """);
        StartWorker("w1");
        var submit = await Task.Run(() => OrchProcess.Run(_dir, "submit", "short.yaml", "--coordinator", Address, "--json"));
        Assert.True(submit.ExitCode == 0, submit.ToString());
        var id = submit.LastJson.GetProperty("sweep").GetString()!;
        await CompletedAsync(id);

        var neither = await Task.Run(() => OrchProcess.Run(_dir, "extend", id, "--coordinator", Address));
        Assert.Contains("give one of --trials N (more trials) and --epochs N", OrchProcess.AssertOneLineError(neither, 2), StringComparison.Ordinal);
        var extend = await Task.Run(() => OrchProcess.Run(_dir, "extend", id, "--epochs", "3", "--coordinator", Address, "--json"));
        Assert.True(extend.ExitCode == 0, extend.ToString());
        Assert.Equal(("running", 3), (extend.LastJson.GetProperty("state").GetString(), extend.LastJson.GetProperty("epochs").GetInt32()));

        var sweep = await CompletedAsync(id);
        var trial = Assert.Single(await TrialsAsync(id));
        Assert.Equal((TrialState.Completed, 3, 3, 2), (trial.State, trial.Epoch, trial.Epochs, trial.Attempt));
        Assert.Equal(trial.Id, sweep.BestTrialId);
        await using (var store = await RedisStateStore.ConnectAsync(_redis.Configuration, _prefix, CancellationToken.None))
        {
            // Epochs 2 and 3 continue the run: the steps go on from epoch 1's, none repeated.
            var points = await store.GetMetricsAsync(trial.Id, CancellationToken.None);
            Assert.Equal([1, 2, 3], points.Select(p => p.Epoch).Distinct());
            var steps = points.Select(p => p.Step).ToList();
            Assert.Equal(steps.Order(), steps);
            Assert.Equal(steps.Count, steps.Distinct().Count());
        }
        var log = await Task.Run(() => OrchProcess.Run(_dir, "logs", trial.Id, "--coordinator", Address));
        Assert.Contains("resumed from the checkpoint of epoch 1", log.StdOut, StringComparison.Ordinal);

        // The best checkpoint is the trained-on run's: it evaluates to the reported best.
        var best = await Task.Run(() => OrchProcess.Run(_dir, "best", id, "--download", "best.ckpt", "--coordinator", Address));
        Assert.True(best.ExitCode == 0, best.ToString());
        var eval = await Task.Run(() => OrchProcess.Run(_dir, "eval", "--checkpoint", "best.ckpt", "--json"));
        Assert.True(eval.ExitCode == 0, eval.ToString());
        Assert.Equal(trial.BestMetric, eval.LastJson.GetProperty("accuracy").GetDouble(), 6);

        var again = await Task.Run(() => OrchProcess.Run(_dir, "extend", id, "--epochs", "3", "--coordinator", Address));
        Assert.Contains("train 3 epochs already", OrchProcess.AssertOneLineError(again, 1), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_coordinator_whose_redis_is_down_is_reported_as_such_not_as_unreachable()
    {
        await _redis.KillAsync(CancellationToken.None);
        try
        {
            var r = await Task.Run(() => OrchProcess.Run(_dir, "sweeps", "--coordinator", Address));
            var line = OrchProcess.AssertOneLineError(r, 1);
            Assert.Contains($"the coordinator at {Address} cannot reach its state store", line, StringComparison.Ordinal);
        }
        finally
        {
            await _redis.RestartAsync(CancellationToken.None);
        }
    }
}

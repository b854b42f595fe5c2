using System.Globalization;
using System.Text.Json;
using Orchestrator.TestSupport;

namespace Orchestrator.Cli.FunctionalTests;

/// <summary>
/// `orch logs` and `orch best --top-n/--trial` against real coordinators: a finished sweep run by
/// `orch local` and served by `orch coordinator`, and a live one on a coordinator and a worker
/// process, its log followed while the trial trains.
/// </summary>
[Collection(EndToEnd.Name)]
public sealed class LogsAndBestTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("orch-logs-").FullName;

    private const string Grid = """
        name: logs-and-best
        data: { name: fashion-mnist, limitTrain: 600, limitTest: 200 }
        model: { name: simple-cnn }
        trial: { epochs: 2, batchSize: 64 }
        parameters:
          optimizer.lr: { values: [0.002, 0.02, 0.1] }
        search: { method: grid, parallelTrials: 2 }
        objective: { metric: val_loss, goal: minimize }
        """;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static List<JsonElement> JsonLines(OrchProcess.Result r) =>
        [.. r.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement)];

    [Fact]
    public async Task A_finished_sweep_shows_each_trials_log_its_best_trials_by_rank_and_any_trial_on_request()
    {
        await using var sweep = FinishedSweep.Start(_dir, Grid);
        var trial = sweep.Id + "-t0001";

        // The log: who ran it, the run, one line per epoch, how it ended, in that order.
        var logs = await sweep.RunAsync("logs", trial);
        Assert.True(logs.ExitCode == 0, logs.ToString());
        var text = logs.StdOut;
        int At(string s) { var i = text.IndexOf(s, StringComparison.Ordinal); Assert.True(i >= 0, $"no '{s}' in:\n{text}"); return i; }
        Assert.True(At("attempt 1 on worker local-") < At("train simple-cnn") && At("train simple-cnn") < At("epoch 1/2  train loss")
                    && At("epoch 1/2  train loss") < At("epoch 2/2  train loss") && At("epoch 2/2  train loss") < At(" completed"), text);
        var json = JsonLines(await sweep.RunAsync("logs", trial, "--json"));
        var seqs = json.Where(l => l.GetProperty("type").GetString() == "line").Select(l => l.GetProperty("seq").GetInt64()).ToList();
        Assert.Equal(Enumerable.Range(1, seqs.Count).Select(i => (long)i), seqs);
        Assert.Equal(seqs.Count, json[^1].GetProperty("lines").GetInt32());

        var unknown = OrchProcess.AssertOneLineError(await sweep.RunAsync("logs", sweep.Id + "-t0042"), 1);
        Assert.Contains($"no trial '{sweep.Id}-t0042' in sweep {sweep.Id}", unknown);
        Assert.Contains("is not a trial id", OrchProcess.AssertOneLineError(await sweep.RunAsync("logs", "t0001"), 2));

        // The two best by val_loss (minimize), as `orch trials` ranks them, with the epoch of the best value.
        var top = await sweep.RunAsync("best", sweep.Id, "--top-n", "2", "--json");
        Assert.True(top.ExitCode == 0, top.ToString());
        var ranked = JsonLines(top);
        Assert.Equal(["trial", "trial", "summary"], ranked.Select(l => l.GetProperty("type").GetString()));
        var trials = await sweep.RunAsync("trials", sweep.Id, "--json");
        var bestFirst = JsonDocument.Parse(trials.StdOut).RootElement.EnumerateArray().Select(t => t.GetProperty("trial").GetString()).ToList();
        Assert.Equal(bestFirst.Take(2), ranked.Take(2).Select(t => t.GetProperty("trial").GetString()));
        var metrics = ranked.Take(2).Select(t => t.GetProperty("best_metric").GetDouble()).ToList();
        Assert.True(metrics[0] <= metrics[1], string.Join(", ", metrics));
        Assert.All(ranked.Take(2), t => Assert.InRange(t.GetProperty("best_epoch").GetInt32(), 1, 2));
        Assert.Equal([1, 2], ranked.Take(2).Select(t => t.GetProperty("rank").GetInt32()));
        Assert.Equal(("val_loss", "minimize", 2), (ranked[2].GetProperty("objective").GetString(), ranked[2].GetProperty("goal").GetString(), ranked[2].GetProperty("trials").GetInt32()));
        var best = await sweep.RunAsync("best", sweep.Id, "--json");
        Assert.Equal(bestFirst[0], best.LastJson.GetProperty("trial").GetString());

        // More than there are: every trial with a result, and the table says so.
        var all = await sweep.RunAsync("best", sweep.Id, "--top-n", "10");
        Assert.True(all.ExitCode == 0, all.ToString());
        // Spectre wraps at the terminal width (80 when redirected).
        Assert.Contains("only 3 trial(s) have a result so far", System.Text.RegularExpressions.Regex.Replace(all.StdOut, @"\s+", " "), StringComparison.Ordinal);
        Assert.True(all.StdOut.Contains("optimizer.lr", StringComparison.Ordinal), all.StdOut);
        Assert.Contains("--top-n must be 1 or more", OrchProcess.AssertOneLineError(await sweep.RunAsync("best", sweep.Id, "--top-n", "0"), 2));

        // One chosen trial, the worst, with its checkpoint.
        var worst = bestFirst[^1]!;
        var chosen = await sweep.RunAsync("best", sweep.Id, "--trial", worst, "--download", "worst.ckpt", "--json");
        Assert.True(chosen.ExitCode == 0, chosen.ToString());
        Assert.Equal(worst, chosen.LastJson.GetProperty("trial").GetString());
        Assert.True(new FileInfo(Path.Combine(_dir, "worst.ckpt")).Length > 1000);
        Assert.Contains("belongs to sweep sw-00000000, not",
            OrchProcess.AssertOneLineError(await sweep.RunAsync("best", sweep.Id, "--trial", "sw-00000000-t0001"), 2));
        Assert.Contains($"no trial '{sweep.Id}-t0042' in sweep {sweep.Id}",
            OrchProcess.AssertOneLineError(await sweep.RunAsync("best", sweep.Id, "--trial", sweep.Id + "-t0042"), 1));
        Assert.Contains("--download saves one trial's checkpoint",
            OrchProcess.AssertOneLineError(await sweep.RunAsync("best", sweep.Id, "--top-n", "2", "--download", "x.ckpt"), 2));
    }

    [Fact]
    public async Task Following_a_trials_log_prints_its_epochs_as_they_come_and_ends_when_the_trial_ends()
    {
        File.WriteAllText(Path.Combine(_dir, "sweep.yaml"), """
            name: follow-me
            data: { name: fashion-mnist, limitTrain: 600, limitTest: 200 }
            model: { name: simple-cnn }
            trial: { epochs: 3, batchSize: 64 }
            parameters:
              optimizer.lr: { values: [0.02] }
            search: { method: grid }
            """);
        var port = RedisServer.FreePort();
        var address = $"http://127.0.0.1:{port.ToString(CultureInfo.InvariantCulture)}";
        await using var coordinator = OrchService.Start(_dir, "coordinator", "--state-dir", "state", "--port", port.ToString(CultureInfo.InvariantCulture), "--gradient-port", "0");
        OrchProcess.Result submit;
        var deadline = DateTime.UtcNow.AddSeconds(60);
        do
        {
            submit = await Task.Run(() => OrchProcess.Run(_dir, "submit", "sweep.yaml", "--coordinator", address, "--json"));
            if (submit.ExitCode == 0 || DateTime.UtcNow > deadline || coordinator.HasExited) break;
            await Task.Delay(500);
        }
        while (true);
        Assert.True(submit.ExitCode == 0, submit + "\ncoordinator:\n" + coordinator.Output);
        var trial = submit.LastJson.GetProperty("sweep").GetString() + "-t0000";

        // Following starts before any worker exists: the trial is pending, its log empty.
        var follow = Task.Run(() => OrchProcess.Run(_dir, "logs", trial, "-f", "--coordinator", address));
        await Task.Delay(2000);
        if (follow.IsCompleted) Assert.Fail("orch logs -f ended before the trial started:\n" + await follow);
        await using var worker = OrchService.Start(_dir, "worker", "--coordinator", address, "--id", "w1", "--threads", "1", "--work-dir", Path.Combine(_dir, "w1"));

        var followed = await follow.WaitAsync(TimeSpan.FromMinutes(4));
        Assert.True(followed.ExitCode == 0, followed + "\nworker:\n" + worker.Output);
        var text = followed.StdOut;
        foreach (var expected in new[] { "attempt 1 on worker w1", "epoch 1/3  train loss", "epoch 2/3  train loss", "epoch 3/3  train loss", "checkpoint of epoch 3 stored" })
            Assert.Contains(expected, text);
        // It ended because the trial did: the last line is the trial's own last line.
        Assert.EndsWith(" completed", text.TrimEnd());
        var trials = OrchProcess.Run(_dir, "trials", trial[..trial.LastIndexOf("-t", StringComparison.Ordinal)], "--json", "--coordinator", address);
        Assert.Equal("completed", JsonDocument.Parse(trials.StdOut).RootElement[0].GetProperty("state").GetString());
    }
}

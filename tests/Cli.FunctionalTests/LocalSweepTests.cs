namespace Orchestrator.Cli.FunctionalTests;

[Collection(EndToEnd.Name)]
public sealed class LocalSweepTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("orch-local-").FullName;

    private const string Sweep = """
        name: local-test
        data: { name: fashion-mnist, limitTrain: 800, limitTest: 200 }
        model: { name: simple-cnn }
        trial: { epochs: 1, batchSize: 64 }
        parameters:
          optimizer.lr: { values: [0.02, 0.05] }
        search: { method: grid, parallelTrials: 2 }
        """;

    [Fact]
    public void Orch_local_runs_a_real_sweep_and_its_best_checkpoint_evaluates_to_the_reported_metric()
    {
        File.WriteAllText(Path.Combine(_dir, "sweep.yaml"), Sweep);
        var r = OrchProcess.Run(_dir, "local", "sweep.yaml", "--workers", "2", "--state-dir", "state", "--json");
        Assert.True(r.ExitCode == 0, r.ToString());
        var summary = r.LastJson;
        Assert.Equal("summary", summary.GetProperty("type").GetString());
        Assert.Equal(2, summary.GetProperty("trials_completed").GetInt32());
        var best = summary.GetProperty("best_metric").GetDouble();
        Assert.True(best > 0.4, $"best accuracy {best} (chance is 0.1)");
        var checkpoint = summary.GetProperty("checkpoint").GetString()!;
        Assert.True(File.Exists(checkpoint), checkpoint);
        Assert.StartsWith(summary.GetProperty("sweep").GetString()!, summary.GetProperty("best_trial").GetString()!);

        var eval = OrchProcess.Run(_dir, "eval", "--checkpoint", checkpoint, "--json");
        Assert.True(eval.ExitCode == 0, eval.ToString());
        Assert.Equal(best, eval.LastJson.GetProperty("accuracy").GetDouble(), 6);
    }

    [Fact]
    public async Task Orch_local_killed_with_sigkill_resumes_the_same_sweep_when_run_again_and_trains_each_trial_once()
    {
        // Two trials, one worker: kill the run once the first trial has completed.
        File.WriteAllText(Path.Combine(_dir, "sweep.yaml"), Sweep.Replace("parallelTrials: 2", "parallelTrials: 1", StringComparison.Ordinal));
        string first;
        await using (var run = OrchService.Start(_dir, "local", "sweep.yaml", "--workers", "1", "--state-dir", "state", "--json"))
        {
            var deadline = DateTime.UtcNow.AddMinutes(3);
            while (!run.Output.Contains("\"state\":\"completed\"", StringComparison.Ordinal) && DateTime.UtcNow < deadline) await Task.Delay(200);
            Assert.True(run.Output.Contains("\"state\":\"completed\"", StringComparison.Ordinal), run.Output);
            await run.KillAsync();
            first = System.Text.RegularExpressions.Regex.Match(run.Output, "\"sweep\":\"(sw-[0-9a-f]+)\"").Groups[1].Value;
        }
        Assert.StartsWith("sw-", first, StringComparison.Ordinal);

        var again = OrchProcess.Run(_dir, "local", "sweep.yaml", "--workers", "1", "--state-dir", "state", "--json");
        Assert.True(again.ExitCode == 0, again.ToString());
        var summary = again.LastJson;
        Assert.Equal(first, summary.GetProperty("sweep").GetString());
        Assert.Equal(2, summary.GetProperty("trials_completed").GetInt32());
        // Once that sweep has finished, the same file starts a new one.
        var sweeps = OrchProcess.Run(_dir, "local", "sweep.yaml", "--workers", "1", "--state-dir", "state", "--json");
        Assert.NotEqual(first, sweeps.LastJson.GetProperty("sweep").GetString());
    }

    [Theory]
    [InlineData("ring", "fp32")]
    [InlineData("ring", "bf16")]
    [InlineData("coordinator", "fp32")]
    [InlineData("coordinator", "bf16")]
    public void Orch_local_runs_data_parallel_trials_on_two_workers_each(string aggregation, string wire)
    {
        File.WriteAllText(Path.Combine(_dir, "ddp.yaml"), Sweep + $"\nresources: {{ workers: 2, aggregation: {aggregation}, wire: {wire} }}\n");
        var r = OrchProcess.Run(_dir, "local", "ddp.yaml", "--workers", "4", "--state-dir", "state", "--json");
        Assert.True(r.ExitCode == 0, r.ToString());
        var summary = r.LastJson;
        Assert.Equal(2, summary.GetProperty("trials_completed").GetInt32());
        Assert.True(summary.GetProperty("best_metric").GetDouble() > 0.4, r.StdOut);
        Assert.True(File.Exists(summary.GetProperty("checkpoint").GetString()!));
    }

    [Fact]
    public void A_sweep_file_error_names_the_file_line_and_field_before_anything_runs()
    {
        File.WriteAllText(Path.Combine(_dir, "bad.yaml"), Sweep.Replace("optimizer.lr", "optimizer.learningRate", StringComparison.Ordinal));
        var line = OrchProcess.AssertOneLineError(OrchProcess.Run(_dir, "local", "bad.yaml", "--state-dir", "state"), 2);
        Assert.Contains("bad.yaml:6:", line);
        Assert.Contains("optimizer.learningRate", line);
    }

    [Fact]
    public void An_unreachable_coordinator_is_one_line()
    {
        var line = OrchProcess.AssertOneLineError(OrchProcess.Run(_dir, "sweeps", "--coordinator", "http://127.0.0.1:9"), 1);
        Assert.Contains("cannot reach the coordinator at http://127.0.0.1:9", line);
    }

    [Fact]
    public void A_malformed_coordinator_address_is_one_line()
    {
        var line = OrchProcess.AssertOneLineError(OrchProcess.Run(_dir, "sweeps", "--coordinator", "coordinator:5000"), 2);
        Assert.Contains("expected a URL", line);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}

using Grpc.Net.Client;
using Orchestrator.Coordinator.State.Redis;
using Orchestrator.Protocol.V1;
using Orchestrator.TestSupport;

namespace Orchestrator.Cli.FunctionalTests;

/// <summary>
/// The multi-process path: a real redis-server, an `orch coordinator` process and `orch worker`
/// processes on loopback, running a small grid on a Fashion-MNIST subset. Failures are real
/// SIGKILLs of workers and of the coordinator.
/// </summary>
[Collection(EndToEnd.Name)]
public sealed partial class SweepEndToEndTests : IAsyncLifetime
{
    private const string SweepYaml = """
        name: e2e-grid
        data: { name: fashion-mnist, limitTrain: 1200, limitTest: 300 }
        model: { name: simple-cnn }
        trial:
          epochs: 3
          batchSize: 64
          optimizer: { name: sgd, momentum: 0.9 }
        parameters:
          optimizer.lr: { values: [0.02, 0.05] }
          model.dropout: { values: [0.0, 0.2] }
        search: { method: grid, parallelTrials: 2 }
        objective: { metric: val_accuracy, goal: maximize }
        """;

    private readonly string _dir = Directory.CreateTempSubdirectory("orch-e2e-").FullName;
    private readonly string _prefix = "e2e" + Guid.NewGuid().ToString("N")[..8];
    private readonly List<OrchService> _services = [];
    private RedisServer _redis = null!;
    private int _port;
    private int _gradientPort;
    private OrchService _coordinator = null!;

    private string Address => $"http://127.0.0.1:{_port}";

    public async Task InitializeAsync()
    {
        _redis = await RedisServer.StartAsync(CancellationToken.None);
        _port = RedisServer.FreePort();
        // Kept across coordinator restarts; not the default 5002, which another coordinator on this machine may hold.
        _gradientPort = RedisServer.FreePort();
        _coordinator = StartCoordinator();
        await ReadyAsync();
        File.WriteAllText(Path.Combine(_dir, "sweep.yaml"), SweepYaml);
    }

    /// <summary>Waits until the coordinator answers.</summary>
    private Task ReadyAsync() => EventuallyAsync(async () =>
        await WithClientAsync(c => c.ListSweepsAsync(new ListSweepsRequest(), deadline: DateTime.UtcNow.AddSeconds(2)).ResponseAsync),
        TimeSpan.FromSeconds(60), "the coordinator starting");

    private OrchService StartCoordinator()
    {
        var c = OrchService.Start(_dir, "coordinator", "--redis", _redis.Configuration, "--redis-prefix", _prefix, "--port", _port.ToString(),
            "--state-dir", Path.Combine(_dir, "state"), "--lease-timeout", "3", "--gradient-port", _gradientPort.ToString());
        _services.Add(c);
        return c;
    }

    private OrchService StartWorker(string id, params string[] more)
    {
        var w = OrchService.Start(_dir, ["worker", "--coordinator", Address, "--id", id, "--threads", "1", "--work-dir", Path.Combine(_dir, id), .. more]);
        _services.Add(w);
        return w;
    }

    private async Task<string> SubmitAsync()
    {
        var r = await Task.Run(() => OrchProcess.Run(_dir, "submit", "sweep.yaml", "--coordinator", Address, "--json"));
        Assert.True(r.ExitCode == 0, r + "\ncoordinator:\n" + _coordinator.Output);
        return r.LastJson.GetProperty("sweep").GetString()!;
    }

    private async Task<T> WithClientAsync<T>(Func<Protocol.V1.Sweeps.SweepsClient, Task<T>> call)
    {
        using var channel = GrpcChannel.ForAddress(Address);
        return await call(new Protocol.V1.Sweeps.SweepsClient(channel));
    }

    private async Task<Sweep> SweepAsync(string id) =>
        await WithClientAsync(c => c.GetSweepAsync(new GetSweepRequest { SweepId = id }, deadline: DateTime.UtcNow.AddSeconds(10)).ResponseAsync);

    private async Task<IReadOnlyList<Trial>> TrialsAsync(string id) =>
        (await WithClientAsync(c => c.ListTrialsAsync(new ListTrialsRequest { SweepId = id }, deadline: DateTime.UtcNow.AddSeconds(10)).ResponseAsync)).Trials;

    /// <summary>Polls until the condition holds (coordinator restarts make single calls fail: those count as "not yet").</summary>
    private async Task<T> EventuallyAsync<T>(Func<Task<T?>> probe, TimeSpan timeout, string what) where T : class
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                if (await probe() is { } value) return value;
            }
            catch (Grpc.Core.RpcException) { }
            await Task.Delay(300);
        }
        throw new TimeoutException($"{what} did not happen within {timeout}.\ncoordinator:\n{_coordinator.Output}\n" +
                                   string.Join("\n", _services.Select(s => s.Output)));
    }

    private Task<Sweep> CompletedAsync(string id) => EventuallyAsync(async () =>
    {
        var s = await SweepAsync(id);
        Assert.NotEqual(SweepState.Failed, s.State);
        return s.State == SweepState.Completed ? s : null;
    }, TimeSpan.FromMinutes(4), $"sweep {id} completing");

    /// <summary>Every trial completed, with exactly one metric point per epoch 1..3: nothing lost, nothing twice.</summary>
    private async Task AssertEveryEpochRecordedOnceAsync(string sweepId)
    {
        await using var store = await RedisStateStore.ConnectAsync(_redis.Configuration, _prefix, CancellationToken.None);
        var trials = await store.ListTrialsAsync(sweepId, CancellationToken.None);
        Assert.Equal(4, trials.Count);
        foreach (var t in trials)
        {
            Assert.Equal(Orchestrator.Coordinator.Domain.TrialStatus.Completed, t.State);
            var points = await store.GetMetricsAsync(t.Id, CancellationToken.None);
            var epochs = string.Join(",", points.Select(p => p.Epoch));
            Assert.True(epochs == "1,2,3" && points.Select(p => p.Step).Distinct().Count() == points.Count,
                $"trial {t.Id} (attempt {t.Attempt}) has metric points for epochs [{epochs}], steps [{string.Join(",", points.Select(p => p.Step))}]; " +
                $"expected each of 1,2,3 once.\ncoordinator:\n{_coordinator.Output}\n" + string.Join("\n", _services.Select(s => s.Output)));
        }
    }

    [Fact]
    public async Task A_grid_runs_on_two_worker_processes_and_the_best_checkpoint_evaluates_to_the_reported_metric()
    {
        StartWorker("w1");
        StartWorker("w2");
        var id = await SubmitAsync();
        var sweep = await CompletedAsync(id);
        Assert.Equal(4, sweep.TrialsCompleted);
        Assert.True(sweep.BestMetric > 0.5, $"best accuracy {sweep.BestMetric}");
        await AssertEveryEpochRecordedOnceAsync(id);

        var best = await Task.Run(() => OrchProcess.Run(_dir, "best", id, "--coordinator", Address, "--download", "best.ckpt", "--json"));
        Assert.True(best.ExitCode == 0, best.ToString());
        Assert.Equal(sweep.BestTrialId, best.LastJson.GetProperty("trial").GetString());
        var eval = await Task.Run(() => OrchProcess.Run(_dir, "eval", "--checkpoint", "best.ckpt", "--json"));
        Assert.True(eval.ExitCode == 0, eval.ToString());
        Assert.Equal(sweep.BestMetric, eval.LastJson.GetProperty("accuracy").GetDouble(), 6);

        var pt = await Task.Run(() => OrchProcess.Run(_dir, "best", id, "--coordinator", Address, "--download", "best.pt", "--format", "pytorch"));
        Assert.True(pt.ExitCode == 0, pt.ToString());
        Assert.True(new FileInfo(Path.Combine(_dir, "best.pt")).Length > 1_000_000);

        // ONNX, converted here after the download as orch export does; ONNX Runtime opens it with a dynamic batch.
        var onnx = await Task.Run(() => OrchProcess.Run(_dir, "best", id, "--coordinator", Address, "--download", "best.onnx", "--format", "onnx", "--json"));
        Assert.True(onnx.ExitCode == 0, onnx.ToString());
        Assert.EndsWith("best.onnx", onnx.LastJson.GetProperty("checkpoint").GetString());
        using (var session = new Microsoft.ML.OnnxRuntime.InferenceSession(Path.Combine(_dir, "best.onnx")))
        {
            Assert.Equal([-1, 1, 28, 28], session.InputMetadata["input"].Dimensions);
            Assert.Contains("Ankle boot", session.ModelMetadata.CustomMetadataMap["classes"]);
        }

        var trials = await Task.Run(() => OrchProcess.Run(_dir, "trials", id, "--coordinator", Address, "--json"));
        Assert.True(trials.ExitCode == 0, trials.ToString());
        // Sorted by the objective: the first row is the best trial.
        Assert.Equal(sweep.BestTrialId, System.Text.Json.JsonDocument.Parse(trials.StdOut).RootElement[0].GetProperty("trial").GetString());
    }

    [Fact]
    public async Task A_killed_worker_loses_its_trial_which_resumes_elsewhere_with_no_lost_or_duplicated_steps()
    {
        var w1 = StartWorker("w1");
        StartWorker("w2");
        var id = await SubmitAsync();
        // Wait until w1 has trained at least one epoch of a trial (so a checkpoint exists), then SIGKILL it.
        var victim = await EventuallyAsync(async () => (await TrialsAsync(id))
            .FirstOrDefault(t => t.State == TrialState.Running && t.Epoch >= 1 && t.WorkerIds.Contains("w1")), TimeSpan.FromMinutes(2), "w1 finishing an epoch");
        await w1.KillAsync();

        var sweep = await CompletedAsync(id);
        Assert.Equal(4, sweep.TrialsCompleted);
        var resumed = (await TrialsAsync(id)).Single(t => t.Id == victim.Id);
        Assert.True(resumed.Attempt >= 2, $"trial {victim.Id} ran {resumed.Attempt} time(s)");
        await AssertEveryEpochRecordedOnceAsync(id);
    }

    [Fact]
    public async Task A_restarted_coordinator_reloads_everything_from_redis_and_every_trial_completes_once()
    {
        StartWorker("w1");
        StartWorker("w2");
        var id = await SubmitAsync();
        await EventuallyAsync(async () => (await TrialsAsync(id)).FirstOrDefault(t => t.Epoch >= 1), TimeSpan.FromMinutes(2), "a first epoch");
        await _coordinator.KillAsync();
        await Task.Delay(1000);
        _coordinator = StartCoordinator();
        await ReadyAsync();

        var sweep = await CompletedAsync(id);
        Assert.Equal(4, sweep.TrialsCompleted);
        await AssertEveryEpochRecordedOnceAsync(id);
    }

    [Fact]
    public async Task A_data_parallel_trial_survives_the_SIGKILL_of_one_rank_by_resuming_on_fewer_ranks()
    {
        File.WriteAllText(Path.Combine(_dir, "ddp.yaml"), """
            name: e2e-data-parallel
            data: { name: fashion-mnist, limitTrain: 1600, limitTest: 300 }
            model: { name: simple-cnn }
            trial: { epochs: 3, batchSize: 32 }
            parameters:
              optimizer.lr: { values: [0.03] }
            search: { method: grid }
            resources: { workers: 2, minWorkers: 1 }
            """);
        var w1 = StartWorker("w1");
        StartWorker("w2");
        var r = await Task.Run(() => OrchProcess.Run(_dir, "submit", "ddp.yaml", "--coordinator", Address, "--json"));
        Assert.True(r.ExitCode == 0, r.ToString());
        var id = r.LastJson.GetProperty("sweep").GetString()!;
        // Both ranks train; once the first epoch's checkpoint is stored, SIGKILL one of them. (Killed
        // earlier, the trial restarts from scratch on one rank, whose steps differ: epoch 1 would
        // then be recorded twice under different step numbers.)
        // The resume point is the last checkpoint's epoch in the store (the best checkpoint, uploaded
        // just before it, does not count).
        var trial = await EventuallyAsync(async () =>
        {
            var t = (await TrialsAsync(id)).FirstOrDefault(t => t.State == TrialState.Running && t.WorkerIds.Count == 2);
            if (t is null) return null;
            await using var s = await RedisStateStore.ConnectAsync(_redis.Configuration, _prefix, CancellationToken.None);
            return (await s.GetTrialAsync(t.Id, CancellationToken.None))?.CheckpointEpoch >= 1 ? t : null;
        }, TimeSpan.FromMinutes(2), "both ranks finishing an epoch and its last checkpoint stored");
        await w1.KillAsync();

        // The survivor's all-reduce fails instead of hanging; the trial restarts from its checkpoint on one rank.
        var sweep = await EventuallyAsync(async () =>
        {
            var s = await SweepAsync(id);
            return s.State is SweepState.Completed or SweepState.Failed ? s : null;
        }, TimeSpan.FromMinutes(4), "the sweep ending");
        Assert.Equal(SweepState.Completed, sweep.State);
        var final = (await TrialsAsync(id)).Single();
        Assert.True(final.Attempt >= 2, $"attempt {final.Attempt}");
        await using var store = await RedisStateStore.ConnectAsync(_redis.Configuration, _prefix, CancellationToken.None);
        var points = await store.GetMetricsAsync(trial.Id, CancellationToken.None);
        Assert.Equal([1, 2, 3], points.Select(p => p.Epoch));
        Assert.Equal(2, points[0].Values["world_size"]);
        Assert.Equal(1, points[^1].Values["world_size"]);
    }

    [Fact]
    public async Task A_data_parallel_sweep_averaged_by_the_coordinator_trains_across_processes_through_shared_memory()
    {
        File.WriteAllText(Path.Combine(_dir, "coord.yaml"), """
            name: e2e-coordinator-aggregation
            data: { name: fashion-mnist, limitTrain: 1200, limitTest: 300 }
            model: { name: simple-cnn }
            trial: { epochs: 2, batchSize: 32 }
            parameters:
              optimizer.lr: { values: [0.03] }
            search: { method: grid }
            resources: { workers: 2, aggregation: coordinator }
            """);
        var workers = new[] { StartWorker("w1"), StartWorker("w2") };
        var r = await Task.Run(() => OrchProcess.Run(_dir, "submit", "coord.yaml", "--coordinator", Address, "--json"));
        Assert.True(r.ExitCode == 0, r.ToString());
        var id = r.LastJson.GetProperty("sweep").GetString()!;
        var sweep = await CompletedAsync(id);
        // Separate processes on the coordinator's machine, as the coordinator's user: shared memory.
        Assert.All(workers, w => Assert.Contains("gradients averaged by the coordinator over shared memory", w.Output, StringComparison.Ordinal));
        Assert.True(sweep.BestMetric > 0.5, $"best accuracy {sweep.BestMetric}");
        await using var store = await RedisStateStore.ConnectAsync(_redis.Configuration, _prefix, CancellationToken.None);
        var trial = (await TrialsAsync(id)).Single();
        var points = await store.GetMetricsAsync(trial.Id, CancellationToken.None);
        Assert.Equal([1, 2], points.Select(p => p.Epoch));
        Assert.All(points, p => Assert.Equal(2, p.Values["world_size"]));
        Assert.All(points, p => Assert.True(p.Values["aggregation_bytes"] > 0));
    }

    public async Task DisposeAsync()
    {
        foreach (var s in _services) await s.DisposeAsync();
        await _redis.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }
}

/// <summary>End-to-end tests start several training processes: run them one at a time.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class EndToEnd
{
    public const string Name = "end to end (processes)";
}

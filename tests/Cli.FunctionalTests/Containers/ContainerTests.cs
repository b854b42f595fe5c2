using System.Text.Json;
using Grpc.Net.Client;
using Orchestrator.Coordinator.Domain;
using Orchestrator.Coordinator.State.Redis;
using Orchestrator.Protocol.V1;
using TrialStatus = Orchestrator.Coordinator.Domain.TrialStatus;

namespace Orchestrator.Cli.FunctionalTests.Containers;

/// <summary>
/// The images run together as a cluster would run them: Redis with its append-only file on a
/// volume, the coordinator and two CPU workers, on a podman network. The host submits a sweep to
/// the published port, and the faults a cluster delivers arrive mid-sweep: a worker pod stopped
/// (SIGTERM, then the drain), the coordinator and Redis killed (SIGKILL) and restarted.
/// Needs the images of containers/build.sh (.ci/run builds them).
/// </summary>
[Collection(EndToEnd.Name)]
public sealed partial class ContainerTests : IAsyncLifetime
{
    // About 4 s an epoch with one thread: long enough for each fault to land inside the sweep.
    private const string SweepYaml = """
        name: containers
        data: { name: fashion-mnist, limitTrain: 3000, limitTest: 300 }
        model: { name: simple-cnn }
        trial:
          epochs: 4
          batchSize: 64
          optimizer: { name: sgd, momentum: 0.9 }
        parameters:
          optimizer.lr: { values: [0.02, 0.05] }
          model.dropout: { values: [0.0, 0.2] }
        search: { method: grid, parallelTrials: 2 }
        objective: { metric: val_accuracy, goal: maximize }
        """;

    private const int Epochs = 4;
    private const int GrpcPort = 5000, HttpPort = 5001, RedisPort = 6379, WorkerMetricsPort = 9464;
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(5) };
    private readonly string _dir = Directory.CreateTempSubdirectory("orch-containers-").FullName;
    private ContainerStack _stack = null!;

    private string Address => $"http://127.0.0.1:{_stack.HostPort("coordinator", GrpcPort)}";
    private string CoordinatorHttp => $"http://127.0.0.1:{_stack.HostPort("coordinator", HttpPort)}";
    private string RedisAddress => $"127.0.0.1:{_stack.HostPort("redis", RedisPort)}";

    public async Task InitializeAsync()
    {
        _stack = await ContainerStack.CreateAsync();
        File.WriteAllText(Path.Combine(_dir, "sweep.yaml"), SweepYaml);
    }

    public async Task DisposeAsync()
    {
        await _stack.DisposeAsync();
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    private async Task StartRedisAsync()
    {
        var data = await _stack.VolumeAsync("redis-data");
        // The manifests' persistence: an append-only file, fsync every second, on the volume.
        await _stack.RunAsync("redis", ContainerStack.RedisImage, [RedisPort], ["-v", data + ":/data"],
            "--appendonly", "yes", "--appendfsync", "everysec");
    }

    private async Task StartCoordinatorAsync()
    {
        var state = await _stack.VolumeAsync("coordinator-state");
        await _stack.RunAsync("coordinator", ContainerStack.CoordinatorImage, [GrpcPort, HttpPort], [
            // As the manifests run it: a read-only root, writes only to its volume and /tmp.
            "--read-only", "--tmpfs", "/tmp",
            "-v", state + ":/var/lib/orchestrator",
            // The coordinator serves the data set to the workers, which fetch it into their scratch folder.
            "-v", "/usr/share/datasets/fashion-mnist:/usr/share/datasets/fashion-mnist:ro",
            "-e", "ORCH_REDIS=redis:6379",
        ]);
    }

    // As the manifests run it: a read-only root, writes only to /scratch and /tmp (emptyDir there).
    private Task StartWorkerAsync(string id) => _stack.RunAsync(id, ContainerStack.WorkerImage, [WorkerMetricsPort], ["--read-only", "--tmpfs", "/tmp", "--tmpfs", "/scratch"],
        "worker", "--coordinator", "http://coordinator:5000", "--id", id, "--threads", "1",
        "--metrics-port", WorkerMetricsPort.ToString(), "--metrics-bind", "0.0.0.0", "--drain-timeout", "120");

    [Fact]
    public async Task The_images_run_a_sweep_submitted_from_the_host_through_a_drained_worker_and_killed_coordinator_and_Redis_and_nothing_is_lost()
    {
        try
        {
            await RunScenarioAsync();
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new Xunit.Sdk.XunitException($"{e.GetType().Name}: {e.Message}\n{e.StackTrace}\n\ncontainer logs:\n{await _stack.LogsAsync()}");
        }
    }

    private async Task RunScenarioAsync()
    {
        await StartRedisAsync();
        await StartCoordinatorAsync();
        await StartWorkerAsync("w1");
        await StartWorkerAsync("w2");
        await HttpStatusAsync($"{CoordinatorHttp}/readyz", 200, "the coordinator becoming ready", TimeSpan.FromSeconds(60));
        foreach (var w in new[] { "w1", "w2" })
            await HttpStatusAsync($"http://127.0.0.1:{_stack.HostPort(w, WorkerMetricsPort)}/readyz", 200, $"worker {w} becoming ready", TimeSpan.FromSeconds(60));

        // From the host, to the published port.
        var submit = await Task.Run(() => OrchProcess.Run(_dir, "submit", "sweep.yaml", "--coordinator", Address, "--json"));
        Assert.True(submit.ExitCode == 0, submit.ToString());
        var sweepId = submit.LastJson.GetProperty("sweep").GetString()!;

        // 1. `podman stop` of a worker mid-trial: SIGTERM, the drain finishes the epoch and hands the trial back.
        var victim = await EventuallyAsync(async () =>
        {
            var t = (await StoredTrialsAsync(sweepId)).FirstOrDefault(t => t.State == TrialStatus.Running && t.WorkerIds.Contains("w1") && t.CheckpointEpoch >= 1);
            return t;
        }, TimeSpan.FromMinutes(3), "worker w1 finishing a first epoch");
        await _stack.StopAsync("w1", graceSeconds: 150);
        Assert.Equal(0, await _stack.ExitCodeAsync("w1"));
        // The worker exits once its hand-back is written to the stream; the coordinator stores it a moment later.
        var handedBack = await EventuallyAsync(async () => await StoredTrialAsync(victim.Id) is { HandedBack: >= 1 } t ? t : null,
            TimeSpan.FromSeconds(30), $"the coordinator storing the hand-back of {victim.Id}");
        Assert.True(handedBack.HandedBack >= 1 && handedBack.CountedAttempts <= 1,
            $"trial {victim.Id} after the drain: handed back {handedBack.HandedBack} time(s), {handedBack.CountedAttempts} counted attempt(s), state {handedBack.State}");
        await _stack.StartAsync("w1");

        // 2. `podman kill` of the coordinator, then a restart on the same volume and Redis.
        await EventuallyAsync(async () => (await StoredTrialsAsync(sweepId)).Sum(t => t.Epoch) >= handedBack.Epoch + 3 ? "progress" : null,
            TimeSpan.FromMinutes(3), "training going on after the drain");
        await _stack.KillAsync("coordinator");
        await Task.Delay(TimeSpan.FromSeconds(1));
        await _stack.StartAsync("coordinator");
        await HttpStatusAsync($"{CoordinatorHttp}/readyz", 200, "the restarted coordinator becoming ready", TimeSpan.FromSeconds(60));

        // 3. `podman kill` of Redis: the coordinator stays alive but not ready; Redis restarts from its append-only file.
        var before = (await StoredTrialsAsync(sweepId)).Sum(t => t.Epoch);
        await _stack.KillAsync("redis");
        await HttpStatusAsync($"{CoordinatorHttp}/readyz", 503, "the coordinator reporting not ready while Redis is down", TimeSpan.FromSeconds(30));
        Assert.Equal(200, await StatusAsync($"{CoordinatorHttp}/healthz"));
        await Task.Delay(TimeSpan.FromSeconds(3));
        await _stack.StartAsync("redis");
        await HttpStatusAsync($"{CoordinatorHttp}/readyz", 200, "the coordinator ready again once Redis is back", TimeSpan.FromSeconds(60));
        Assert.True((await StoredTrialsAsync(sweepId)).Sum(t => t.Epoch) >= before, "Redis lost progress over its restart");

        // The sweep completes, every trial once, with one metric point per epoch.
        var sweep = await EventuallyAsync(async () =>
        {
            var s = await SweepAsync(sweepId);
            Assert.NotEqual(SweepState.Failed, s.State);
            return s.State == SweepState.Completed ? s : null;
        }, TimeSpan.FromMinutes(5), $"sweep {sweepId} completing");
        Assert.Equal(4, sweep.TrialsCompleted);
        await using (var store = await RedisStateStore.ConnectAsync(RedisAddress, "orch", CancellationToken.None))
        {
            foreach (var t in await store.ListTrialsAsync(sweepId, CancellationToken.None))
            {
                Assert.Equal(TrialStatus.Completed, t.State);
                var points = await store.GetMetricsAsync(t.Id, CancellationToken.None);
                Assert.True(points.Select(p => p.Epoch).SequenceEqual(Enumerable.Range(1, Epochs)) && points.Select(p => p.Step).Distinct().Count() == points.Count,
                    $"trial {t.Id} (attempt {t.Attempt}) has metric points for epochs [{string.Join(",", points.Select(p => p.Epoch))}]; expected each of 1..{Epochs} once");
            }
        }

        // The CLI from a container, on the cluster network.
        var trials = await Podman.RunAsync("run", "--rm", "--read-only", "--network", _stack.Network, ContainerStack.WorkerImage,
            "trials", sweepId, "--coordinator", "http://coordinator:5000", "--json");
        var rows = JsonDocument.Parse(trials).RootElement;
        Assert.Equal(4, rows.GetArrayLength());
        Assert.Equal(sweep.BestTrialId, rows[0].GetProperty("trial").GetString());

        // The best checkpoint, downloaded to the host, evaluates to the metric the sweep reported.
        var best = await Task.Run(() => OrchProcess.Run(_dir, "best", sweepId, "--coordinator", Address, "--download", "best.ckpt", "--json"));
        Assert.True(best.ExitCode == 0, best.ToString());
        Assert.Equal(sweep.BestTrialId, best.LastJson.GetProperty("trial").GetString());
        var eval = await Task.Run(() => OrchProcess.Run(_dir, "eval", "--checkpoint", "best.ckpt", "--json"));
        Assert.True(eval.ExitCode == 0, eval.ToString());
        Assert.Equal(sweep.BestMetric, eval.LastJson.GetProperty("accuracy").GetDouble(), 6);
        Assert.True(sweep.BestMetric > 0.5, $"best accuracy {sweep.BestMetric}");

        // The probes of the manifests, asked of the healthy containers after all that.
        await AssertManifestProbesAnswerAsync();
    }

    private async Task<IReadOnlyList<TrialRecord>> StoredTrialsAsync(string sweepId)
    {
        await using var store = await RedisStateStore.ConnectAsync(RedisAddress, "orch", CancellationToken.None);
        return await store.ListTrialsAsync(sweepId, CancellationToken.None);
    }

    private async Task<TrialRecord> StoredTrialAsync(string trialId)
    {
        await using var store = await RedisStateStore.ConnectAsync(RedisAddress, "orch", CancellationToken.None);
        return (await store.GetTrialAsync(trialId, CancellationToken.None))!;
    }

    private async Task<Sweep> SweepAsync(string id)
    {
        using var channel = GrpcChannel.ForAddress(Address);
        return await new Orchestrator.Protocol.V1.Sweeps.SweepsClient(channel).GetSweepAsync(new GetSweepRequest { SweepId = id }, deadline: DateTime.UtcNow.AddSeconds(10));
    }

    private static async Task<int> StatusAsync(string url)
    {
        try
        {
            using var response = await Http.GetAsync(url);
            return (int)response.StatusCode;
        }
        catch (HttpRequestException) { return 0; }
        catch (TaskCanceledException) { return 0; }
    }

    private static Task HttpStatusAsync(string url, int status, string what, TimeSpan timeout) =>
        EventuallyAsync(async () => await StatusAsync(url) == status ? "yes" : null, timeout, $"{what} (GET {url} answering {status})");

    /// <summary>Polls until the probe returns a value; failures of single calls (a restarting coordinator or Redis) count as "not yet".</summary>
    private static async Task<T> EventuallyAsync<T>(Func<Task<T?>> probe, TimeSpan timeout, string what) where T : class
    {
        var deadline = DateTime.UtcNow + timeout;
        Exception? last = null;
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                if (await probe() is { } value) return value;
            }
            catch (Grpc.Core.RpcException e) { last = e; }
            catch (Orchestrator.Coordinator.State.StateStoreUnavailableException e) { last = e; }
            catch (StackExchange.Redis.RedisException e) { last = e; }
            await Task.Delay(500);
        }
        throw new TimeoutException($"{what} did not happen within {timeout}" + (last is null ? "" : $" (last error: {last.Message})"));
    }
}

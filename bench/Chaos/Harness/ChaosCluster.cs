using System.Globalization;
using Grpc.Net.Client;
using Orchestrator.Cli.FunctionalTests;
using Orchestrator.TestSupport;

namespace Orchestrator.Bench.Chaos;

/// <summary>
/// A real redis-server, an `orch coordinator` process and `orch worker` processes on loopback,
/// each of which can be SIGKILLed and started again as it was: Redis on the same port with the
/// same append-only file, the coordinator with the same store (Redis prefix and state folder) and
/// ports, a worker with the same id and work folder.
/// </summary>
public sealed class ChaosCluster : IAsyncDisposable
{
    private readonly List<OrchService> _coordinators = [];
    private readonly List<OrchService> _retired = [];
    private readonly OrchService?[] _workers;
    private readonly int _port;
    private readonly int _gradientPort;
    private readonly GrpcChannel _channel;

    private readonly int _leaseSeconds;

    private ChaosCluster(RedisServer redis, string dir, int workers, int leaseSeconds)
    {
        _leaseSeconds = leaseSeconds;
        Redis = redis;
        Directory = dir;
        Prefix = "chaos" + Guid.NewGuid().ToString("N")[..8];
        _port = RedisServer.FreePort();
        _gradientPort = RedisServer.FreePort();
        _workers = new OrchService?[workers];
        _channel = GrpcChannel.ForAddress(Address);
        Sweeps = new Protocol.V1.Sweeps.SweepsClient(_channel);
    }

    /// <summary>The run's folder: sweep files, the coordinator's state, the workers' work folders, downloads.</summary>
    public string Directory { get; }

    /// <summary>The Redis server (the checks read the store directly once the sweeps ended).</summary>
    public RedisServer Redis { get; }

    /// <summary>The coordinator's key prefix in Redis.</summary>
    public string Prefix { get; }

    /// <summary>The coordinator's gRPC address.</summary>
    public string Address => $"http://127.0.0.1:{_port.ToString(CultureInfo.InvariantCulture)}";

    /// <summary>A client of the coordinator's sweeps API (its channel reconnects after a restart).</summary>
    public Protocol.V1.Sweeps.SweepsClient Sweeps { get; }

    /// <summary>Worker processes.</summary>
    public int WorkerCount => _workers.Length;

    /// <summary>What every coordinator process of the run printed, in order (the current one last).</summary>
    public IReadOnlyList<string> CoordinatorOutputs => _coordinators.Select(c => c.Output).ToList();

    /// <summary>
    /// Starts Redis, the coordinator and <paramref name="workers"/> workers. The coordinator allows
    /// <paramref name="maxTrialAttempts"/> assignments per trial (its appsettings.json in the run's
    /// folder): with the default 3, a trial whose worker is killed three times fails by design.
    /// </summary>
    public static async Task<ChaosCluster> StartAsync(int workers, int maxTrialAttempts, CancellationToken ct, int leaseSeconds = 3)
    {
        var dir = System.IO.Directory.CreateTempSubdirectory("orch-chaos-").FullName;
        await File.WriteAllTextAsync(Path.Combine(dir, "appsettings.json"),
            $$"""{ "Coordinator": { "MaxTrialAttempts": {{maxTrialAttempts.ToString(CultureInfo.InvariantCulture)}} } }""", ct).ConfigureAwait(false);
        var redis = await RedisServer.StartAsync(ct).ConfigureAwait(false);
        var cluster = new ChaosCluster(redis, dir, workers, leaseSeconds);
        cluster.StartCoordinator();
        for (var i = 0; i < workers; i++) cluster.StartWorker(i);
        return cluster;
    }

    /// <summary>SIGKILLs the target and waits for it to be gone.</summary>
    public async Task KillAsync(FaultKind kind, int worker, CancellationToken ct)
    {
        switch (kind)
        {
            case FaultKind.Redis:
                await Redis.KillAsync(ct).ConfigureAwait(false);
                break;
            case FaultKind.Coordinator:
                await _coordinators[^1].KillAsync().ConfigureAwait(false);
                break;
            case FaultKind.Worker when _workers[worker] is { } w:
                await w.KillAsync().ConfigureAwait(false);
                _retired.Add(w);
                _workers[worker] = null;
                break;
        }
    }

    /// <summary>Starts the killed target again, as it was.</summary>
    public async Task RestartAsync(FaultKind kind, int worker, CancellationToken ct)
    {
        switch (kind)
        {
            case FaultKind.Redis:
                await Redis.RestartAsync(ct).ConfigureAwait(false);
                break;
            case FaultKind.Coordinator:
                StartCoordinator();
                break;
            case FaultKind.Worker:
                StartWorker(worker);
                break;
        }
    }

    private void StartCoordinator() => _coordinators.Add(OrchService.Start(Directory, "coordinator",
        "--redis", Redis.Configuration, "--redis-prefix", Prefix, "--port", _port.ToString(CultureInfo.InvariantCulture),
        "--state-dir", Path.Combine(Directory, "state"), "--lease-timeout", _leaseSeconds.ToString(CultureInfo.InvariantCulture),
        "--gradient-port", _gradientPort.ToString(CultureInfo.InvariantCulture)));

    private void StartWorker(int i)
    {
        var id = WorkerId(i);
        _workers[i] = OrchService.Start(Directory, "worker", "--coordinator", Address, "--id", id, "--threads", "1",
            "--work-dir", Path.Combine(Directory, id));
    }

    private static string WorkerId(int i) => "w" + (i + 1).ToString(CultureInfo.InvariantCulture);

    /// <summary>Writes what every process printed into <c>logs/</c> of the run's folder and returns that folder.</summary>
    public string WriteLogs()
    {
        var logs = System.IO.Directory.CreateDirectory(Path.Combine(Directory, "logs")).FullName;
        for (var i = 0; i < _coordinators.Count; i++) File.WriteAllText(Path.Combine(logs, $"coordinator-{i + 1}.log"), _coordinators[i].Output);
        var n = 0;
        foreach (var w in _retired.Concat(_workers.OfType<OrchService>())) File.WriteAllText(Path.Combine(logs, $"worker-{++n}.log"), w.Output);
        File.WriteAllText(Path.Combine(logs, "redis.log"), Redis.Log);
        return logs;
    }

    /// <summary>Kills everything; deletes the folder unless <paramref name="keepFolder"/>.</summary>
    public async Task StopAsync(bool keepFolder)
    {
        _channel.Dispose();
        foreach (var s in _workers.OfType<OrchService>().Concat(_retired).Concat(_coordinators)) await s.DisposeAsync().ConfigureAwait(false);
        if (keepFolder) await Redis.KillAsync(CancellationToken.None).ConfigureAwait(false);
        else await Redis.DisposeAsync().ConfigureAwait(false);
        if (!keepFolder)
        {
            try { System.IO.Directory.Delete(Directory, recursive: true); }
            catch (IOException) { /* a leftover temp folder is harmless */ }
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync() => await StopAsync(keepFolder: false).ConfigureAwait(false);
}

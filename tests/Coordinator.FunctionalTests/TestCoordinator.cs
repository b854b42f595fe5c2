using Grpc.Core;
using Grpc.Core.Interceptors;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Orchestrator.Coordinator.Configuration;
using Orchestrator.Coordinator.Hosting;
using Orchestrator.Coordinator.State;
using Orchestrator.Protocol.V1;
using Orchestrator.TestSupport;

namespace Orchestrator.Coordinator.FunctionalTests;

/// <summary>
/// A real coordinator in this process: Kestrel on a free loopback port, the SQLite store (or a
/// real Redis) under a temporary state folder, short leases so that lease tests take seconds.
/// </summary>
public sealed class TestCoordinator : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly bool _ownsStateDir;
    private bool _stopped;

    private TestCoordinator(WebApplication app, string stateDir, bool ownsStateDir, string? authToken, (string Ca, string? Certificate, string? Key)? tls)
    {
        _app = app;
        StateDir = stateDir;
        _ownsStateDir = ownsStateDir;
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
        Address = new Uri(address);
        Channel = tls is { } t
            ? GrpcChannel.ForAddress(Address, new GrpcChannelOptions { HttpHandler = Orchestrator.Configuration.TlsFiles.ClientHandler(t.Ca, t.Certificate, t.Key) })
            : GrpcChannel.ForAddress(Address);
        var headers = new Metadata();
        if (authToken is not null) headers.Add("authorization", "Bearer " + authToken);
        Headers = headers;
        Sweeps = new Protocol.V1.Sweeps.SweepsClient(Channel.Intercept(m =>
        {
            foreach (var h in headers) m.Add(h);
            return m;
        }));
    }

    /// <summary>Where the coordinator listens (http://127.0.0.1:port).</summary>
    public Uri Address { get; }

    /// <summary>Its state folder (SQLite database, checkpoints).</summary>
    public string StateDir { get; }

    /// <summary>A channel to it, shared by clients.</summary>
    public GrpcChannel Channel { get; }

    /// <summary>Headers every test client sends (the token, when the coordinator wants one).</summary>
    public Metadata Headers { get; }

    /// <summary>The user API, with the token when one is configured.</summary>
    public Protocol.V1.Sweeps.SweepsClient Sweeps { get; }

    /// <summary>The coordinator's state store, to look at what the API does not show (metric points).</summary>
    public IStateStore Store => _app.Services.GetRequiredService<IStateStore>();

    /// <summary>The gradient socket's port (null when it is off).</summary>
    public int? GradientPort => _app.Services.GetRequiredService<Aggregation.GradientSocketEndpoint>().Port;

    /// <summary>This coordinator's gradient-exchange metrics.</summary>
    public Metrics.CoordinatorMetrics Metrics => _app.Services.GetRequiredService<Metrics.CoordinatorMetrics>();

    public Aggregation.GradientExchangeMetrics GradientMetrics => _app.Services.GetRequiredService<Aggregation.GradientExchangeMetrics>();

    /// <summary>The gradient socket's Unix twin (null when none).</summary>
    public string? GradientSocketPath => _app.Services.GetRequiredService<Aggregation.GradientSocketEndpoint>().UnixPath;

    public static readonly TimeSpan LeaseTimeout = TimeSpan.FromSeconds(1.5);
    public static readonly TimeSpan HeartbeatInterval = TimeSpan.FromMilliseconds(200);

    /// <summary>Builds and starts a coordinator; with <paramref name="tls"/>, the test clients trust that CA and present that certificate.</summary>
    public static async Task<TestCoordinator> StartAsync(
        Action<CoordinatorOptions>? configure = null,
        string? stateDir = null,
        string? redis = null,
        string redisPrefix = "orch",
        string? dataDir = null,
        string[]? args = null,
        bool gradientSocket = true,
        (string Ca, string? Certificate, string? Key)? tls = null)
    {
        var owns = stateDir is null;
        stateDir ??= Path.Combine(Path.GetTempPath(), "orch-ftest-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(stateDir);
        string? token = null;
        var app = CoordinatorHost.Build(new CoordinatorHostSettings
        {
            GrpcPort = 0,
            GradientPort = gradientSocket ? 0 : null,
            StateDir = stateDir,
            Redis = redis,
            RedisPrefix = redisPrefix,
            DataDir = dataDir,
            LogLevel = LogLevel.Warning,
            Configure = o =>
            {
                o.LeaseTimeout = LeaseTimeout;
                o.HeartbeatInterval = HeartbeatInterval;
                o.SchedulerInterval = TimeSpan.FromMilliseconds(100);
                // Tests never inherit a token from the environment: only the auth tests set one.
                o.AuthToken = "";
                configure?.Invoke(o);
                token = string.IsNullOrEmpty(o.AuthToken) ? null : o.AuthToken;
            },
        }, args);
        try
        {
            await app.StartAsync().DefaultTimeout();
        }
        catch
        {
            await app.DisposeAsync();
            throw;
        }
        return new TestCoordinator(app, stateDir, owns, token, tls);
    }

    /// <summary>Connects a fake worker (sends Hello, waits for Welcome).</summary>
    public Task<FakeWorker> ConnectWorkerAsync(string id, IEnumerable<TrialLease>? running = null, bool heartbeat = true, WorkerCapabilities? capabilities = null) =>
        FakeWorker.ConnectAsync(this, id, running, heartbeat, capabilities);

    /// <summary>Connects a fake worker offering <paramref name="gpus"/> GPUs (0: a CPU worker).</summary>
    public Task<FakeWorker> ConnectGpuWorkerAsync(string id, int gpus) =>
        FakeWorker.ConnectAsync(this, id, null, heartbeat: true, FakeWorker.Offering(gpus));

    /// <summary>A WorkerGateway client carrying the test headers.</summary>
    public WorkerGateway.WorkerGatewayClient Gateway() => new(Channel.Intercept(m =>
    {
        foreach (var h in Headers) m.Add(h);
        return m;
    }));

    /// <summary>A DataSets client carrying the test headers.</summary>
    public DataSets.DataSetsClient DataSets() => new(Channel.Intercept(m =>
    {
        foreach (var h in Headers) m.Add(h);
        return m;
    }));

    /// <summary>Submits a sweep and returns it.</summary>
    public async Task<Sweep> SubmitAsync(string yaml) =>
        await Sweeps.SubmitSweepAsync(new SubmitSweepRequest { SpecYaml = yaml, FileName = "sweep.yaml" }).ResponseAsync.DefaultTimeout();

    public async Task<Sweep> GetSweepAsync(string id) =>
        await Sweeps.GetSweepAsync(new GetSweepRequest { SweepId = id }).ResponseAsync.DefaultTimeout();

    /// <summary>The trials of a sweep in index order.</summary>
    public async Task<IReadOnlyList<Trial>> TrialsAsync(string sweepId) =>
        (await Sweeps.ListTrialsAsync(new ListTrialsRequest { SweepId = sweepId }).ResponseAsync.DefaultTimeout()).Trials.OrderBy(t => t.Index).ToList();

    public async Task<Trial> TrialAsync(string sweepId, string trialId) =>
        (await TrialsAsync(sweepId)).Single(t => t.Id == trialId);

    /// <summary>Polls until <paramref name="condition"/> holds for the sweep (bounded by the default timeout).</summary>
    public Task<Sweep> WaitForSweepAsync(string sweepId, Func<Sweep, bool> condition) =>
        Eventually.WaitAsync(() => GetSweepAsync(sweepId), condition, $"sweep {sweepId}");

    /// <summary>Polls until <paramref name="condition"/> holds for the trial.</summary>
    public Task<Trial> WaitForTrialAsync(string sweepId, string trialId, Func<Trial, bool> condition) =>
        Eventually.WaitAsync(() => TrialAsync(sweepId, trialId), condition, $"trial {trialId}");

    /// <summary>Stops the coordinator (the shutdown a pod gets), keeping its state folder.</summary>
    public async Task StopAsync()
    {
        if (_stopped) return;
        _stopped = true;
        Channel.Dispose();
        await _app.StopAsync().DefaultTimeout();
        await _app.DisposeAsync().AsTask().DefaultTimeout();
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        if (_ownsStateDir)
        {
            try { Directory.Delete(StateDir, recursive: true); }
            catch (IOException) { /* a leftover temp folder is harmless */ }
        }
    }
}

/// <summary>Polling with a bound, for state that settles asynchronously.</summary>
public static class Eventually
{
    public static async Task<T> WaitAsync<T>(Func<Task<T>> read, Func<T, bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + TaskTimeoutExtensions.Timeout;
        T last;
        while (true)
        {
            last = await read();
            if (condition(last)) return last;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"{what} never reached the expected state; last seen: {last}");
            await Task.Delay(50);
        }
    }
}

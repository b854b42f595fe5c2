using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading.Channels;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;
using Orchestrator.Protocol.V1;
using Polly;

namespace Orchestrator.Worker.Host;

/// <summary>
/// A worker: keeps one Connect stream to the coordinator (reconnecting with backoff), runs the
/// trials it is assigned, reports metrics and outcomes, uploads checkpoints. A trial keeps
/// training while the coordinator is unreachable; reports made meanwhile are re-sent on
/// reconnect (steps are idempotent), and the Hello lists the running trials so the coordinator
/// can hand them back to this worker. Asked to stop (<see cref="Drain"/>), it finishes the epoch
/// in progress of each trial, hands the trials back and exits once the coordinator has every
/// report; <see cref="StopNow"/> stops at once. Its trial runners see it only as an
/// <see cref="ITrialHost"/>. Partial files by concern: the connection (.Connection), the
/// shutdown (.Shutdown) and the GPUs it offers (.Devices).
/// </summary>
public sealed partial class WorkerAgent : ITrialHost, IAsyncDisposable
{
    private readonly WorkerAgentOptions _options;
    private readonly ILogger _logger;
    private readonly GrpcChannel _channel;
    private readonly WorkerGateway.WorkerGatewayClient _client;
    private readonly CheckpointClient _checkpoints;
    private readonly Plugins.PluginCache _plugins;
    private readonly System.Net.Security.SslClientAuthenticationOptions? _tls;
    private readonly ConcurrentDictionary<string, TrialRunner> _trials = new(StringComparer.Ordinal);
    private readonly Channel<WorkerMessage> _outbox = Channel.CreateUnbounded<WorkerMessage>(new UnboundedChannelOptions { SingleReader = true });
    private readonly ResiliencePipeline _reconnect;
    private TimeSpan _heartbeat = TimeSpan.FromSeconds(2);
    // Takes no new trials: set by the coordinator's Drain message or by Drain().
    private volatile bool _draining;
    private volatile bool _connected;

    // The shutdown drain. _gate orders taking a trial against starting the drain, so none starts unnoticed.
    private readonly Lock _gate = new();
    private readonly TaskCompletionSource _drained = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _stopNow = new();
    private readonly CancellationTokenSource _nothingToSay = new();
    private readonly List<string> _drainSummary = [];
    private bool _shuttingDown;
    private bool _stopping;
    private long _drainStarted;
    private ITimer? _drainTimeout;
    // Reports and outcomes queued but not yet written to a stream (heartbeats do not count).
    private int _undelivered;

    public WorkerAgent(WorkerAgentOptions options, ILoggerFactory loggers)
    {
        _options = options;
        _logger = loggers.CreateLogger<WorkerAgent>();
        _channel = GrpcChannel.ForAddress(options.CoordinatorUrl, new GrpcChannelOptions
        {
            MaxReceiveMessageSize = 8 * 1024 * 1024,
            MaxSendMessageSize = 8 * 1024 * 1024,
            LoggerFactory = loggers,
            HttpHandler = ConnectionHandler(options),
        });
        _client = new WorkerGateway.WorkerGatewayClient(_channel);
        // An https:// coordinator: its gradient socket and gradient stream are TLS too, checked the same way.
        _tls = options.CoordinatorUrl.StartsWith("https://", StringComparison.OrdinalIgnoreCase)
            ? Orchestrator.Configuration.TlsFiles.ClientAuthentication(options.TlsCa, options.TlsClientCertificate, options.TlsClientKey) ?? new System.Net.Security.SslClientAuthenticationOptions()
            : null;
        _checkpoints = new CheckpointClient(_client, Headers, options, _logger);
        Datasets = new Orchestrator.Data.RemoteDatasetCache(new DataSets.DataSetsClient(_channel), Path.Combine(options.WorkDir, "datasets"), Headers);
        _plugins = new Plugins.PluginCache(new Protocol.V1.Plugins.PluginsClient(_channel), Path.Combine(options.WorkDir, "plugins"), Headers);
        _reconnect = WorkerResilience.Reconnect(options, _logger);
        Directory.CreateDirectory(options.WorkDir);
        DataPort = options.DataPort != 0 ? options.DataPort : FreePort();
        var host = options.AdvertiseHost
                   ?? (Uri.TryCreate(options.CoordinatorUrl, UriKind.Absolute, out var u) && (u.IsLoopback || u.Host == "127.0.0.1") ? "127.0.0.1" : System.Net.Dns.GetHostName());
        DataEndpoint = $"{host}:{DataPort}";
    }

    /// <summary>The port this worker's gradient exchange listens on during data-parallel trials.</summary>
    public int DataPort { get; }

    /// <summary>"host:port" peers connect to.</summary>
    public string DataEndpoint { get; }

    private static int FreePort()
    {
        using var l = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Any, 0);
        l.Start();
        return ((System.Net.IPEndPoint)l.LocalEndpoint).Port;
    }

    public string WorkerId => _options.WorkerId;

    /// <summary>Fetches data sets from the coordinator into &lt;work dir&gt;/datasets (used when <see cref="WorkerAgentOptions.FetchData"/>).</summary>
    private Orchestrator.Data.RemoteDatasetCache Datasets { get; }

    private Metadata Headers => _options.Token is { } t ? new Metadata { { "authorization", "Bearer " + t } } : [];

    /// <summary>Trials running now (a trial with several ranks here counts once).</summary>
    public IReadOnlyCollection<string> RunningTrials => _trials.Values.Select(t => t.Lease.TrialId).Distinct(StringComparer.Ordinal).ToList();

    // A worker may run several ranks of one trial, one per GPU.
    private static string Key(string trialId, int rank) => rank == 0 ? trialId : $"{trialId}#{rank}";

    /// <summary>True when <see cref="StopNow"/> stopped running trials: they lost the epoch in progress.</summary>
    public bool InterruptedTrials { get; private set; }

    /// <summary>
    /// Runs until cancelled (then stops its trials at once), or until a <see cref="Drain"/> is
    /// over and the coordinator has handled every report and hand-back.
    /// </summary>
    public async Task RunAsync(CancellationToken ct)
    {
        Native.TorchRuntime.Initialize(_options.LibTorchDir);
        if (_options.TorchThreads is { } threads) TorchSharp.torch.set_num_threads(threads);
        FindDevices();
        using var run = CancellationTokenSource.CreateLinkedTokenSource(ct, _stopNow.Token, _nothingToSay.Token);
        try
        {
            await _reconnect.ExecuteAsync(async token =>
            {
                if (await SessionAsync(token).ConfigureAwait(false)) return;
                // A clean end of the stream (coordinator shutting down) is a reason to reconnect too.
                throw new RpcException(new Status(StatusCode.Unavailable, "the coordinator closed the stream"));
            }, run.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (run.IsCancellationRequested)
        {
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.Cancelled && run.IsCancellationRequested)
        {
        }
        finally
        {
            foreach (var t in _trials.Values) t.Stop("worker shutting down");
            foreach (var t in _trials.Values) t.Join(TimeSpan.FromSeconds(30));
            _drainTimeout?.Dispose();
        }
        if (_drained.Task.IsCompleted && !_stopNow.IsCancellationRequested)
        {
            string summary;
            lock (_gate) summary = _drainSummary.Count > 0 ? string.Join("; ", _drainSummary) : "no trial was running";
            ShutdownLog.DrainFinished(_logger, Stopwatch.GetElapsedTime(_drainStarted).TotalSeconds, summary);
        }
    }

    private void Handle(CoordinatorMessage message)
    {
        switch (message.KindCase)
        {
            case CoordinatorMessage.KindOneofCase.Welcome:
                _heartbeat = TimeSpan.FromMilliseconds(Math.Max(100, message.Welcome.HeartbeatIntervalMs));
                foreach (var id in message.Welcome.StopTrialIds)
                    foreach (var lost in RanksOf(id)) lost.Stop("the coordinator gave the trial to another worker");
                _connected = true;
                Log.Connected(_logger, _options.CoordinatorUrl, _options.WorkerId);
                break;
            case CoordinatorMessage.KindOneofCase.Assign:
                Accept(message.Assign);
                break;
            case CoordinatorMessage.KindOneofCase.Stop:
                foreach (var t in RanksOf(message.Stop.TrialId)) t.Stop(message.Stop.Reason, message.Stop.AfterCheckpoint);
                break;
            case CoordinatorMessage.KindOneofCase.Drain:
                _draining = true;
                break;
        }
    }

    /// <summary>Starts an assigned trial, or hands it straight back when this worker takes no new ones.</summary>
    private void Accept(AssignTrial a)
    {
        lock (_gate)
        {
            if (!_draining)
            {
                var id = Key(a.Lease.TrialId, a.Rank);
                if (_trials.TryGetValue(id, out var earlier))
                {
                    if (earlier.Lease.FencingToken >= a.Lease.FencingToken) return; // a duplicate
                    // The trial came straight back while its last run here is still ending (a rank
                    // stopping with its gang): that run stops, and this one starts after it.
                    earlier.Stop("the trial was assigned to this worker again");
                }
                var runner = new TrialRunner(this, a, earlier);
                _trials[id] = runner;
                runner.Start();
                return;
            }
        }
        // It crossed the draining heartbeat on the wire: give it back at once rather than let its lease run out.
        Send(new WorkerMessage { Status = new TrialStatus { Lease = a.Lease, Outcome = TrialStatus.Types.Outcome.Drained, Message = "not started, the worker is shutting down" } });
    }

    /// <summary>Queues a message for the coordinator (sent on the current or next connection).</summary>
    private void Send(WorkerMessage message)
    {
        if (message.KindCase != WorkerMessage.KindOneofCase.Heartbeat) Interlocked.Increment(ref _undelivered);
        _outbox.Writer.TryWrite(message);
    }

    // What a trial runner may ask of this worker (ITrialHost).
    WorkerAgentOptions ITrialHost.Options => _options;

    ILogger ITrialHost.Logger => _logger;

    void ITrialHost.Send(WorkerMessage message) => Send(message);

    Task<Orchestrator.Data.FetchResult> ITrialHost.FetchDataAsync(Orchestrator.Trials.DataSpec data, CancellationToken ct) => Datasets.FetchAsync(data, null, ct);

    Task<string> ITrialHost.FetchPluginAsync(string reference, CancellationToken ct) => _plugins.FetchAsync(reference, ct);

    Task ITrialHost.UploadCheckpointAsync(CheckpointHeader header, string path, CancellationToken ct) => _checkpoints.UploadAsync(header, path, ct);

    Task ITrialHost.DownloadCheckpointAsync(TrialLease lease, string path, CancellationToken ct) => _checkpoints.DownloadAsync(lease, path, ct);

    Task<Distributed.IAllReduce> ITrialHost.JoinGradientExchangeAsync(Distributed.GradientTransportRequest request, CancellationToken ct) =>
        Distributed.GradientTransport.ConnectAsync(request with { Headers = Headers, Tls = _tls }, _logger, ct);

    private IEnumerable<TrialRunner> RanksOf(string trialId) => _trials.Values.Where(t => t.Lease.TrialId == trialId).ToList();

    public async ValueTask DisposeAsync()
    {
        foreach (var t in _trials.Values) t.Stop("worker disposed");
        _drainTimeout?.Dispose();
        // The stop sources stay undisposed: a late signal or timer may still cancel them.
        _channel.Dispose();
        await Task.CompletedTask.ConfigureAwait(false);
    }

    private static partial class Log
    {
        [LoggerMessage(100, LogLevel.Information, "Connected to {Url} as {WorkerId}")]
        public static partial void Connected(ILogger logger, string url, string workerId);
    }
}

using System.Collections.Concurrent;
using System.Threading.Channels;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;
using Orchestrator.Protocol.V1;
using Polly;
using Polly.Retry;

namespace Orchestrator.Worker.Host;

/// <summary>
/// A worker: keeps one Connect stream to the coordinator (reconnecting with backoff), runs the
/// trials it is assigned, reports metrics and outcomes, uploads checkpoints. A trial keeps
/// training while the coordinator is unreachable; reports made meanwhile are re-sent on
/// reconnect (steps are idempotent), and the Hello lists the running trials so the coordinator
/// can hand them back to this worker.
/// </summary>
public sealed partial class WorkerAgent : IAsyncDisposable
{
    private readonly WorkerAgentOptions _options;
    private readonly ILogger _logger;
    private readonly GrpcChannel _channel;
    private readonly WorkerGateway.WorkerGatewayClient _client;
    private readonly ConcurrentDictionary<string, TrialRunner> _trials = new(StringComparer.Ordinal);
    private readonly Channel<WorkerMessage> _outbox = Channel.CreateUnbounded<WorkerMessage>(new UnboundedChannelOptions { SingleReader = true });
    private readonly ResiliencePipeline _reconnect;
    private TimeSpan _heartbeat = TimeSpan.FromSeconds(2);
    private volatile bool _draining;

    public WorkerAgent(WorkerAgentOptions options, ILoggerFactory loggers)
    {
        _options = options;
        _logger = loggers.CreateLogger<WorkerAgent>();
        _channel = GrpcChannel.ForAddress(options.CoordinatorUrl, new GrpcChannelOptions
        {
            MaxReceiveMessageSize = 8 * 1024 * 1024,
            MaxSendMessageSize = 8 * 1024 * 1024,
            LoggerFactory = loggers,
        });
        _client = new WorkerGateway.WorkerGatewayClient(_channel);
        Datasets = new Orchestrator.Data.RemoteDatasetCache(new DataSets.DataSetsClient(_channel), Path.Combine(options.WorkDir, "datasets"), Headers);
        _reconnect = new ResiliencePipelineBuilder().AddRetry(new RetryStrategyOptions
        {
            ShouldHandle = new PredicateBuilder()
                .Handle<RpcException>(e => e.StatusCode != StatusCode.Cancelled)
                .Handle<IOException>()
                .Handle<HttpRequestException>(),
            BackoffType = DelayBackoffType.Exponential,
            UseJitter = true,
            Delay = TimeSpan.FromMilliseconds(200),
            MaxDelay = options.MaxBackoff,
            MaxRetryAttempts = int.MaxValue,
            OnRetry = a =>
            {
                Log.Reconnecting(_logger, _options.CoordinatorUrl, a.Outcome.Exception?.Message ?? "", a.RetryDelay.TotalSeconds);
                return ValueTask.CompletedTask;
            },
        }).Build();
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

    internal WorkerGateway.WorkerGatewayClient Client => _client;

    internal WorkerAgentOptions Options => _options;

    internal ILogger Logger => _logger;

    /// <summary>Fetches data sets from the coordinator into &lt;work dir&gt;/datasets (used when <see cref="WorkerAgentOptions.FetchData"/>).</summary>
    internal Orchestrator.Data.RemoteDatasetCache Datasets { get; }

    internal Metadata Headers => _options.Token is { } t ? new Metadata { { "authorization", "Bearer " + t } } : [];

    /// <summary>Trials running now.</summary>
    public IReadOnlyCollection<string> RunningTrials => (IReadOnlyCollection<string>)_trials.Keys;

    /// <summary>Runs until cancelled; then stops its trials.</summary>
    public async Task RunAsync(CancellationToken ct)
    {
        Native.TorchRuntime.Initialize(_options.LibTorchDir);
        if (_options.TorchThreads is { } threads) TorchSharp.torch.set_num_threads(threads);
        try
        {
            await _reconnect.ExecuteAsync(async token =>
            {
                await SessionAsync(token).ConfigureAwait(false);
                // A clean end of the stream (coordinator shutting down) is a reason to reconnect too.
                throw new RpcException(new Status(StatusCode.Unavailable, "the coordinator closed the stream"));
            }, ct).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
        finally
        {
            foreach (var t in _trials.Values) t.Stop("worker shutting down");
            foreach (var t in _trials.Values) t.Join(TimeSpan.FromSeconds(30));
        }
    }

    /// <summary>One connection: Hello, then read assignments while a writer drains the outbox and a timer heartbeats.</summary>
    private async Task SessionAsync(CancellationToken ct)
    {
        using var call = _client.Connect(Headers, cancellationToken: ct);
        var hello = new Hello
        {
            WorkerId = _options.WorkerId,
            Name = _options.Name ?? _options.WorkerId,
            Capabilities = Capabilities(),
            DataEndpoint = DataEndpoint,
        };
        hello.Running.AddRange(_trials.Values.Select(t => t.Lease));
        await call.RequestStream.WriteAsync(new WorkerMessage { Hello = hello }, ct).ConfigureAwait(false);

        using var session = CancellationTokenSource.CreateLinkedTokenSource(ct);
        // Reports of running trials may have been lost with the old stream: send them again.
        foreach (var t in _trials.Values) t.Resend();
        var writer = WriteLoopAsync(call.RequestStream, session.Token);
        var heartbeat = HeartbeatLoopAsync(session.Token);
        try
        {
            await foreach (var message in call.ResponseStream.ReadAllAsync(ct).ConfigureAwait(false))
                Handle(message);
        }
        finally
        {
            await session.CancelAsync().ConfigureAwait(false);
            await Task.WhenAll(writer, heartbeat).ConfigureAwait(false);
        }
    }

    private void Handle(CoordinatorMessage message)
    {
        switch (message.KindCase)
        {
            case CoordinatorMessage.KindOneofCase.Welcome:
                _heartbeat = TimeSpan.FromMilliseconds(Math.Max(100, message.Welcome.HeartbeatIntervalMs));
                foreach (var id in message.Welcome.StopTrialIds)
                    if (_trials.TryGetValue(id, out var lost)) lost.Stop("the coordinator gave the trial to another worker");
                Log.Connected(_logger, _options.CoordinatorUrl, _options.WorkerId);
                break;
            case CoordinatorMessage.KindOneofCase.Assign:
                var a = message.Assign;
                if (_draining) break;
                var runner = new TrialRunner(this, a);
                if (_trials.TryAdd(a.Lease.TrialId, runner)) runner.Start();
                break;
            case CoordinatorMessage.KindOneofCase.Stop:
                if (_trials.TryGetValue(message.Stop.TrialId, out var t)) t.Stop(message.Stop.Reason);
                break;
            case CoordinatorMessage.KindOneofCase.Drain:
                _draining = true;
                break;
        }
    }

    private async Task WriteLoopAsync(IClientStreamWriter<WorkerMessage> stream, CancellationToken ct)
    {
        try
        {
            while (await _outbox.Reader.WaitToReadAsync(ct).ConfigureAwait(false))
            {
                while (_outbox.Reader.TryPeek(out var message))
                {
                    await stream.WriteAsync(message, ct).ConfigureAwait(false);
                    _outbox.Reader.TryRead(out _);
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or RpcException or InvalidOperationException or IOException)
        {
            // The stream broke; what was not written stays in the outbox for the next connection.
        }
    }

    private async Task HeartbeatLoopAsync(CancellationToken ct)
    {
        try
        {
            while (!ct.IsCancellationRequested)
            {
                var beat = new Heartbeat();
                beat.Running.AddRange(_trials.Values.Select(t => t.Lease));
                Send(new WorkerMessage { Heartbeat = beat });
                await Task.Delay(_heartbeat, ct).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>Queues a message for the coordinator (sent on the current or next connection).</summary>
    internal void Send(WorkerMessage message) => _outbox.Writer.TryWrite(message);

    internal void Finished(TrialRunner runner) => _trials.TryRemove(new KeyValuePair<string, TrialRunner>(runner.Lease.TrialId, runner));

    private WorkerCapabilities Capabilities()
    {
        var cuda = Native.TorchRuntime.ResolveDevice(_options.Device).type == TorchSharp.DeviceType.CUDA;
        return new WorkerCapabilities
        {
            Device = cuda ? "cuda" : "cpu",
            Gpus = cuda ? TorchSharp.torch.cuda.device_count() : 0,
            MemoryBytes = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes,
            Version = typeof(WorkerAgent).Assembly.GetName().Version?.ToString() ?? "0",
            CpuCores = Environment.ProcessorCount,
            Host = Environment.MachineName,
        };
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var t in _trials.Values) t.Stop("worker disposed");
        _channel.Dispose();
        await Task.CompletedTask.ConfigureAwait(false);
    }

    private static partial class Log
    {
        [LoggerMessage(100, LogLevel.Information, "Connected to {Url} as {WorkerId}")]
        public static partial void Connected(ILogger logger, string url, string workerId);

        [LoggerMessage(101, LogLevel.Warning, "Coordinator {Url} unreachable ({Reason}); retrying in {Seconds:F1}s")]
        public static partial void Reconnecting(ILogger logger, string url, string reason, double seconds);
    }
}

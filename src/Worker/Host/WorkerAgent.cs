using System.Collections.Concurrent;
using System.Diagnostics;
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
/// can hand them back to this worker. Asked to stop (<see cref="Drain"/>), it finishes the epoch
/// in progress of each trial, hands the trials back and exits once the coordinator has every
/// report; <see cref="StopNow"/> stops at once.
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
            Log.DrainFinished(_logger, Stopwatch.GetElapsedTime(_drainStarted).TotalSeconds, summary);
        }
    }

    /// <summary>
    /// Starts a graceful shutdown (the first SIGTERM or Ctrl+C): no new trials (the coordinator is
    /// told at once), and each running trial finishes the epoch in progress, uploads its
    /// checkpoint and is handed back, so the coordinator re-queues it to resume elsewhere without
    /// counting an attempt (data-parallel ranks on other workers stop after the same epoch).
    /// <see cref="RunAsync"/> returns once that is done and delivered; if it takes longer than
    /// <paramref name="timeout"/>, the worker stops at once (<see cref="StopNow"/>).
    /// </summary>
    public void Drain(TimeSpan timeout)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(timeout, TimeSpan.Zero);
        bool done;
        lock (_gate)
        {
            if (_shuttingDown) return;
            _shuttingDown = true;
            _draining = true;
            _drainStarted = Stopwatch.GetTimestamp();
            var work = _trials.Values.Select(t => t.DrainTarget).ToList();
            foreach (var t in _trials.Values) t.Drain();
            if (work.Count == 0) Log.DrainingIdle(_logger);
            else Log.Draining(_logger, string.Join(", ", work), timeout.TotalSeconds);
            done = _trials.IsEmpty;
        }
        // Tell the coordinator now, not at the next heartbeat, so it assigns this worker nothing more.
        Send(HeartbeatMessage());
        _drainTimeout = TimeProvider.System.CreateTimer(_ => StopNow($"the drain took longer than {timeout.TotalSeconds:0} s"),
            null, timeout, Timeout.InfiniteTimeSpan);
        if (done) DrainDone();
    }

    /// <summary>Ready for work: connected to the coordinator (welcomed) and not draining. The worker's readiness probe.</summary>
    public bool IsReady => _connected && !_draining;

    /// <summary>
    /// Stops at once (a second signal, the drain timeout, or --drain-timeout 0): running trials
    /// stop at the next batch and lose the epoch in progress, as when the worker is killed, and
    /// <see cref="RunAsync"/> returns.
    /// </summary>
    public void StopNow(string reason)
    {
        string work;
        lock (_gate)
        {
            if (_stopping) return;
            _stopping = true;
            _draining = true;
            work = string.Join(", ", _trials.Values.Select(t => t.DrainTarget));
            InterruptedTrials = work.Length > 0;
        }
        if (work.Length > 0) Log.StoppingNow(_logger, reason, work);
        else Log.StoppingIdle(_logger, reason);
        _stopNow.Cancel();
    }

    /// <summary>The last trial of a drain ended: leave now if nothing is left to tell the coordinator, else once it is written.</summary>
    private void DrainDone()
    {
        _drained.TrySetResult();
        // Not on this (trial or signal) thread: cancelling ends the session, whose callbacks may take a while.
        if (Volatile.Read(ref _undelivered) == 0) _ = _nothingToSay.CancelAsync();
    }

    /// <summary>
    /// One connection: Hello, then read assignments while a writer drains the outbox and a timer
    /// heartbeats. Returns true when it ended because a drain is over: the writer closed the
    /// stream after the last report, and the coordinator closed its side once it had handled them.
    /// </summary>
    private async Task<bool> SessionAsync(CancellationToken ct)
    {
        using var call = _client.Connect(Headers, cancellationToken: ct);
        var hello = new Hello
        {
            WorkerId = _options.WorkerId,
            Name = _options.Name ?? _options.WorkerId,
            Capabilities = Capabilities(),
            DataEndpoint = DataEndpoint,
            Draining = _draining,
        };
        hello.DeviceDataEndpoints.AddRange(_deviceEndpoints);
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
            _connected = false;
            await session.CancelAsync().ConfigureAwait(false);
            await Task.WhenAll(writer, heartbeat).ConfigureAwait(false);
        }
        return _drained.Task.IsCompleted && Volatile.Read(ref _undelivered) == 0;
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
                foreach (var t in RanksOf(message.Stop.TrialId)) t.Stop(message.Stop.Reason);
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

    private async Task WriteLoopAsync(IClientStreamWriter<WorkerMessage> stream, CancellationToken ct)
    {
        try
        {
            while (true)
            {
                while (_outbox.Reader.TryPeek(out var message))
                {
                    await stream.WriteAsync(message, ct).ConfigureAwait(false);
                    _outbox.Reader.TryRead(out _);
                    if (message.KindCase != WorkerMessage.KindOneofCase.Heartbeat) Interlocked.Decrement(ref _undelivered);
                }
                if (_drained.Task.IsCompleted && Volatile.Read(ref _undelivered) == 0)
                {
                    // The drain is over and every report is written: end the stream. The coordinator
                    // handles a stream's messages in order and closes its side after the last one,
                    // which ends the session.
                    await stream.CompleteAsync().ConfigureAwait(false);
                    return;
                }
                var more = _outbox.Reader.WaitToReadAsync(ct).AsTask();
                if (!_drained.Task.IsCompleted)
                {
                    await Task.WhenAny(more, _drained.Task).ConfigureAwait(false);
                    // The drain just ended: back to the top, to close the stream once everything is written.
                    if (!more.IsCompleted) continue;
                }
                if (!await more.ConfigureAwait(false)) return;
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
            // Leases need renewing while a drain finishes its epochs; after it, nothing does.
            while (!ct.IsCancellationRequested && !_drained.Task.IsCompleted)
            {
                Send(HeartbeatMessage());
                await Task.Delay(_heartbeat, ct).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private WorkerMessage HeartbeatMessage()
    {
        var beat = new Heartbeat { Draining = _draining };
        beat.Running.AddRange(_trials.Values.Select(t => t.Lease));
        return new WorkerMessage { Heartbeat = beat };
    }

    /// <summary>Queues a message for the coordinator (sent on the current or next connection).</summary>
    internal void Send(WorkerMessage message)
    {
        if (message.KindCase != WorkerMessage.KindOneofCase.Heartbeat) Interlocked.Increment(ref _undelivered);
        _outbox.Writer.TryWrite(message);
    }

    /// <summary>A trial thread ended (its outcome is already queued); <paramref name="summary"/> says how, for the drain's last line.</summary>
    internal void Finished(TrialRunner runner, string summary)
    {
        bool done;
        lock (_gate)
        {
            _trials.TryRemove(new KeyValuePair<string, TrialRunner>(Key(runner.Lease.TrialId, runner.Lease.Rank), runner));
            if (_shuttingDown) _drainSummary.Add(summary);
            done = _shuttingDown && _trials.IsEmpty;
        }
        if (done) DrainDone();
    }

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

        [LoggerMessage(101, LogLevel.Warning, "Coordinator {Url} unreachable ({Reason}); retrying in {Seconds:F1}s")]
        public static partial void Reconnecting(ILogger logger, string url, string reason, double seconds);

        [LoggerMessage(102, LogLevel.Information, "Draining: finishing {Work}, up to {Seconds:0} s; send the signal again to stop now")]
        public static partial void Draining(ILogger logger, string work, double seconds);

        [LoggerMessage(103, LogLevel.Information, "Draining: no trial is running; the worker stops")]
        public static partial void DrainingIdle(ILogger logger);

        [LoggerMessage(104, LogLevel.Information, "Drained in {Seconds:F1} s: {Summary}; the worker exits")]
        public static partial void DrainFinished(ILogger logger, double seconds, string summary);

        [LoggerMessage(105, LogLevel.Warning, "Stopping now ({Reason}): {Work} will not finish")]
        public static partial void StoppingNow(ILogger logger, string reason, string work);

        [LoggerMessage(106, LogLevel.Information, "Stopping now ({Reason}); no trial is running")]
        public static partial void StoppingIdle(ILogger logger, string reason);
    }
}

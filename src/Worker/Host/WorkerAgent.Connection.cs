using Grpc.Core;
using Orchestrator.Protocol.V1;

namespace Orchestrator.Worker.Host;

/// <summary>The worker's connection: one Connect stream at a time, one writer draining the outbox, heartbeats.</summary>
public sealed partial class WorkerAgent
{
    /// <summary>With no frame from the coordinator for this long, the worker pings it (HTTP/2 PING).</summary>
    public static readonly TimeSpan KeepAlivePingDelay = TimeSpan.FromSeconds(5);

    /// <summary>A ping unanswered for this long ends the connection: the worker reconnects.</summary>
    public static readonly TimeSpan KeepAlivePingTimeout = TimeSpan.FromSeconds(10);

    /// <summary>How long opening a connection (TCP and TLS) may take before the attempt fails and is retried with backoff.</summary>
    public static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(10);

    /// <summary>
    /// The channel's HTTP/2 handler: TLS as configured, and keep-alive pings. A worker mostly
    /// writes to its stream and the coordinator rarely answers, so without pings a link that went
    /// silent (a partition, a coordinator host that vanished, a firewall that forgot the
    /// connection) shows only when TCP gives up on its retransmissions, minutes later, and even
    /// after the link returns the connection waits for TCP's backed-off retransmission timer. With
    /// them the worker notices within <see cref="KeepAlivePingDelay"/> + <see cref="KeepAlivePingTimeout"/>,
    /// reconnects with backoff (each attempt bounded by <see cref="ConnectTimeout"/>), and is back
    /// within a backoff of the link's return, its Hello re-attaching or giving up its trials.
    /// </summary>
    private static SocketsHttpHandler ConnectionHandler(WorkerAgentOptions options)
    {
        var handler = Orchestrator.Configuration.TlsFiles.ClientHandler(options.TlsCa, options.TlsClientCertificate, options.TlsClientKey)
                      ?? new SocketsHttpHandler { EnableMultipleHttp2Connections = true };
        handler.KeepAlivePingDelay = KeepAlivePingDelay;
        handler.KeepAlivePingTimeout = KeepAlivePingTimeout;
        handler.KeepAlivePingPolicy = HttpKeepAlivePingPolicy.WithActiveRequests;
        handler.ConnectTimeout = ConnectTimeout;
        return handler;
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
}

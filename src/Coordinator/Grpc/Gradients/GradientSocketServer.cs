using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Options;
using Orchestrator.Coordinator.Aggregation;
using Orchestrator.Coordinator.Configuration;
using Orchestrator.Protocol;

namespace Orchestrator.Coordinator.Grpc.Gradients;

/// <summary>
/// The gradient socket: the <c>coordinator</c> aggregation mode on plain TCP
/// (<see cref="GradientSocketFrames"/>). Each connection is one rank of one trial attempt and joins
/// the same <see cref="AggregationSession"/> a GradientExchange stream would, so the checks,
/// timeouts and failures are the stream's; only the framing differs. Chunks are received straight
/// into pooled arrays that the session sums from, and each mean goes out as one pooled frame
/// shared by every rank: no protobuf, no HTTP/2 frames, no copies besides the kernel's.
/// </summary>
public sealed partial class GradientSocketServer(
    AggregationSessions sessions,
    ITrialLeaseCheck leases,
    GradientSocketEndpoint endpoint,
    GradientExchangeMetrics metrics,
    IOptions<GradientAggregationOptions> options,
    Security.Credentials credentials,
    Metrics.CoordinatorMetrics coordinatorMetrics,
    IOptions<Hosting.ListenSettings> listen,
    ILogger<GradientSocketServer> logger) : IHostedService, IAsyncDisposable
{
    /// <summary>Unix socket file names: the process id lets a later start remove those of killed coordinators.</summary>
    internal const string UnixSocketPrefix = "orch-gradients-";

    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<Task, bool> _connections = new();
    private Socket? _listener;
    private Socket? _unixListener;
    private string? _unixPath;
    private Task? _accepting;
    private Task? _acceptingUnix;
    // TLS on the TCP port when the coordinator serves it (its certificate; mutual TLS with a client CA).
    private System.Net.Security.SslServerAuthenticationOptions? _tls;

    /// <summary>Binds the port (so that assignments can name it from the start) and starts accepting.</summary>
    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (options.Value.SocketPort is not { } port)
        {
            endpoint.Set(null);
            return Task.CompletedTask;
        }
        var address = IPAddress.Parse(options.Value.SocketAddress);
        _tls = Hosting.CoordinatorTls.SocketAuthentication(listen.Value);
        var listener = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            listener.Bind(new IPEndPoint(address, port));
            listener.Listen(512);
        }
        catch (SocketException e)
        {
            listener.Dispose();
            throw new InvalidOperationException($"The gradient socket cannot listen on {address}:{port}: {e.Message} (choose another --gradient-port, or --gradient-port 0 for a free one).", e);
        }
        _listener = listener;
        // Segments a killed coordinator left in /dev/shm (they hold RAM until removed), and its socket.
        SharedMemorySegment.RemoveStale();
        StaleFiles.Remove(Path.GetTempPath(), UnixSocketPrefix, ".sock");
        _unixListener = options.Value.UnixSocket ? ListenUnix(out _unixPath) : null;
        endpoint.Set(((IPEndPoint)listener.LocalEndPoint!).Port, _unixPath);
        Log.Listening(logger, address.ToString(), endpoint.Port!.Value, _tls is null ? "" : " with TLS", _unixPath ?? "none");
        _accepting = AcceptLoopAsync(listener, _stopping.Token);
        if (_unixListener is not null) _acceptingUnix = AcceptLoopAsync(_unixListener, _stopping.Token);
        return Task.CompletedTask;
    }

    /// <summary>
    /// The Unix domain socket twin of the TCP listener, at a path unique to this start (so a worker
    /// never reaches another coordinator's socket through it). Optional: without one (a read-only
    /// temporary folder), co-located workers use TCP.
    /// </summary>
    private Socket? ListenUnix(out string? path)
    {
        path = Path.Combine(Path.GetTempPath(), $"{UnixSocketPrefix}{Environment.ProcessId}-{Guid.NewGuid():N}.sock");
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Bind(new UnixDomainSocketEndPoint(path));
            socket.Listen(512);
            return socket;
        }
        catch (Exception e) when (e is SocketException or IOException or UnauthorizedAccessException)
        {
            Log.NoUnixSocket(logger, path, e.Message);
            socket.Dispose();
            path = null;
            return null;
        }
    }

    /// <summary>Stops accepting and ends every connection (their trials fail UNAVAILABLE and resume elsewhere).</summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_stopping.IsCancellationRequested) return;
        await _stopping.CancelAsync().ConfigureAwait(false);
        _listener?.Dispose();
        _unixListener?.Dispose();
        if (_accepting is not null) await _accepting.ConfigureAwait(false);
        if (_acceptingUnix is not null) await _acceptingUnix.ConfigureAwait(false);
        if (_unixPath is not null) File.Delete(_unixPath);
        await Task.WhenAll(_connections.Keys).WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        await StopAsync(CancellationToken.None).ConfigureAwait(false);
        _stopping.Dispose();
    }

    private async Task AcceptLoopAsync(Socket listener, CancellationToken stopping)
    {
        while (!stopping.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await listener.AcceptAsync(stopping).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException || stopping.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException e)
            {
                // A connection that died in the backlog (reset before accept): keep accepting.
                Log.AcceptFailed(logger, e.SocketErrorCode.ToString());
                continue;
            }
            var connection = ServeAsync(socket, stopping);
            _connections.TryAdd(connection, true);
            _ = connection.ContinueWith(static (t, state) => ((ConcurrentDictionary<Task, bool>)state!).TryRemove(t, out _),
                _connections, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(LogEventIds.Aggregation + 1, LogLevel.Information, "Gradient socket listening on {Address}:{Port}{Tls} (Unix socket for this machine: {Path})")]
        public static partial void Listening(ILogger logger, string address, int port, string tls, string path);

        [LoggerMessage(LogEventIds.Aggregation + 3, LogLevel.Warning, "No Unix gradient socket at {Path} ({Error}); workers on this machine use TCP")]
        public static partial void NoUnixSocket(ILogger logger, string path, string error);

        [LoggerMessage(LogEventIds.Aggregation + 4, LogLevel.Warning, "Gradient socket: TLS handshake with {Peer} refused ({Error})")]
        public static partial void TlsRefused(ILogger logger, string peer, string error);

        [LoggerMessage(LogEventIds.Aggregation + 2, LogLevel.Debug, "Gradient socket accept failed: {Error}")]
        public static partial void AcceptFailed(ILogger logger, string error);
    }
}

using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Grpc.Core;
using Microsoft.Extensions.Options;
using Orchestrator.Coordinator.Grpc;
using Orchestrator.Coordinator.Configuration;
using Orchestrator.Protocol;
using Orchestrator.Protocol.V1;

namespace Orchestrator.Coordinator.Aggregation;

/// <summary>Where the gradient socket listens, once it does (read when trials are assigned).</summary>
public sealed class GradientSocketEndpoint
{
    private volatile string? _advertised;

    /// <summary>The bound port; null while the socket is off or not started.</summary>
    public int? Port { get; private set; }

    /// <summary>":PORT" for AssignTrial.gradient_endpoint; null when ranks must use the gRPC stream.</summary>
    public string? Advertised => _advertised;

    /// <summary>The Unix domain socket of the same listener, for workers on this machine (AssignTrial.gradient_socket_path); null when none.</summary>
    public string? UnixPath { get; private set; }

    internal void Set(int? port, string? unixPath = null)
    {
        Port = port;
        UnixPath = unixPath;
        _advertised = port is { } p ? ":" + p.ToString(System.Globalization.CultureInfo.InvariantCulture) : null;
    }
}

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
    IOptions<CoordinatorOptions> coordinator,
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

    /// <summary>Binds the port (so that assignments can name it from the start) and starts accepting.</summary>
    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (options.Value.SocketPort is not { } port)
        {
            endpoint.Set(null);
            return Task.CompletedTask;
        }
        var address = IPAddress.Parse(options.Value.SocketAddress);
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
        Log.Listening(logger, address.ToString(), endpoint.Port!.Value, _unixPath ?? "none");
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

    /// <summary>One rank's connection: hello, admission, then the read and write loops until the session ends.</summary>
    private async Task ServeAsync(Socket socket, CancellationToken stopping)
    {
        await Task.Yield();
        using var owned = socket;
        if (socket.ProtocolType == ProtocolType.Tcp) socket.NoDelay = true;
        AggregationSession session;
        RankPort port;
        var connection = new Connection(socket);
        try
        {
            var (header, sharedMemory) = await ReadHelloAsync(socket, stopping).ConfigureAwait(false);
            // Shared memory only for a process of our own user on this machine: it must be able to
            // map the segment we make (mode 0600), and nobody else may.
            // (bf16 saves wire bytes; in shared memory there is no wire, so such a rank uses the socket.)
            connection.Shared = sharedMemory && !header.Bf16 && UnixPeer.Uid(socket) is { } peer && peer == UnixPeer.OwnUid();
            sessions.Validate(header);
            if (!await leases.IsCurrentAsync(header.TrialId, header.FencingToken, stopping).ConfigureAwait(false))
                AggregationErrors.ThrowStale(header.TrialId, header.FencingToken);
            (session, port) = sessions.Join(header);
        }
        catch (RpcException refusal)
        {
            await EndWithAsync(socket, refusal).ConfigureAwait(false);
            return;
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or IOException or ObjectDisposedException)
        {
            // Gone before it said who it is, silent past the join timeout, or the coordinator stops.
            return;
        }
        catch (Exception e)
        {
            // The lease could not be checked (the state store is down): the rank fails its join and
            // the trial is assigned again once the store is back.
            await EndWithAsync(socket, new RpcException(new Status(StatusCode.Unavailable, "the coordinator cannot check the trial's assignment: " + e.Message))).ConfigureAwait(false);
            return;
        }

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(stopping, session.Ended);
        // A coordinator that stops ends the trial's exchange for every rank, saying so.
        using var shutdown = stopping.Register(static s => ((AggregationSession)s!).Fail(new RpcException(new Status(StatusCode.Unavailable,
            "the coordinator is shutting down; the trial resumes from its last checkpoint when it is back"))), session);
        var reader = connection.Shared
            ? ReadSharedLoopAsync(connection, session, port, metrics, stop.Token)
            : ReadLoopAsync(socket, session, port, metrics, socket.AddressFamily == AddressFamily.Unix ? "unix" : "tcp", stop.Token);
        try
        {
            await WriteLoopAsync(connection, session, port, stop.Token).ConfigureAwait(false);
        }
        finally
        {
            await stop.CancelAsync().ConfigureAwait(false);
            await reader.ConfigureAwait(false);
            // Another rank's reader may still sum from this rank's segment: unmapped once none does.
            if (connection.Segment is { } segment) session.DisposeWhenIdle(segment);
            sessions.Leave(session);
        }
        if (session.Failure is { } failure) await EndWithAsync(socket, failure).ConfigureAwait(false);
        else await CloseGracefullyAsync(socket).ConfigureAwait(false);
    }

    private async Task<(GradientStreamHeader Header, bool SharedMemory)> ReadHelloAsync(Socket socket, CancellationToken stopping)
    {
        using var bound = CancellationTokenSource.CreateLinkedTokenSource(stopping);
        // A client that connects and says nothing must not hold a connection forever.
        bound.CancelAfter(options.Value.JoinTimeout);
        var preamble = new byte[GradientSocketFrames.PreambleBytes];
        await SocketIo.ReceiveExactlyAsync(socket, preamble, bound.Token).ConfigureAwait(false);
        if (BinaryPrimitives.ReadUInt32LittleEndian(preamble) != GradientSocketFrames.Magic)
            AggregationErrors.ThrowInvalid("this is the coordinator's gradient socket: a connection must start with the gradient socket's magic (docs/data-parallel.md)");
        var length = BinaryPrimitives.ReadInt32LittleEndian(preamble.AsSpan(4));
        if (length < 1 || length > GradientSocketFrames.MaxHelloBytes)
            AggregationErrors.ThrowInvalid($"a gradient socket hello of {length} bytes (1 to {GradientSocketFrames.MaxHelloBytes} allowed)");
        var body = new byte[length];
        await SocketIo.ReceiveExactlyAsync(socket, body, bound.Token).ConfigureAwait(false);
        GradientSocketHello hello;
        try
        {
            hello = GradientSocketHello.Parser.ParseFrom(body);
        }
        catch (Google.Protobuf.InvalidProtocolBufferException e)
        {
            AggregationErrors.ThrowInvalid("the gradient socket hello is not a GradientSocketHello: " + e.Message);
            throw;
        }
        if (!AuthInterceptor.Accepts(coordinator.Value.AuthToken, hello.Authorization))
            throw new RpcException(new Status(StatusCode.Unauthenticated, "missing or wrong token (set ORCH_TOKEN)"));
        if (hello.Header is null) AggregationErrors.ThrowInvalid("the gradient socket hello carries no header");
        return (hello.Header, hello.SharedMemory);
    }

    /// <summary>Feeds the rank's steps to the session until the rank closes its half or anything fails.</summary>
    private static async Task ReadLoopAsync(Socket socket, AggregationSession session, RankPort port, GradientExchangeMetrics metrics, string plane, CancellationToken ct)
    {
        var header = new byte[GradientSocketFrames.StepHeaderBytes];
        var chunkFloats = session.ChunkFloats;
        try
        {
            while (true)
            {
                if (!await SocketIo.TryReceiveExactlyAsync(socket, header, ct).ConfigureAwait(false))
                {
                    session.Depart(port, clean: true);
                    return;
                }
                var type = BinaryPrimitives.ReadUInt32LittleEndian(header);
                var step = BinaryPrimitives.ReadInt64LittleEndian(header.AsSpan(8));
                var floats = BinaryPrimitives.ReadInt64LittleEndian(header.AsSpan(16));
                if (type != GradientSocketFrames.Step)
                {
                    session.Fail(AggregationErrors.Mismatch(session.TrialId, port.Rank, $"sent frame type {type} where a step header was due"));
                    return;
                }
                session.CheckStep(port.Rank, step, floats);
                var chunks = (int)((floats + chunkFloats - 1) / chunkFloats);
                for (var index = 0; index < chunks; index++)
                {
                    var bytes = (int)Math.Min(chunkFloats, floats - (long)index * chunkFloats) * session.ValueBytes;
                    var array = ArrayPool<byte>.Shared.Rent(bytes);
                    await SocketIo.ReceiveExactlyAsync(socket, array.AsMemory(0, bytes), ct).ConfigureAwait(false);
                    session.Receive(port.Rank, step, index, floats, new GradientPart(array.AsMemory(0, bytes), array));
                    metrics.Received(plane, bytes);
                }
            }
        }
        catch (RpcException) when (session.Failure is not null)
        {
            // The session failed (this rank broke the protocol, or another rank failed it).
        }
        catch (Exception)
        {
            // The rank went away (reset, closed mid-step, cancelled): mid-step that fails the trial.
            session.Depart(port, clean: false);
        }
    }

    /// <summary>
    /// Feeds a shared-memory rank's steps to the session: per step a Step frame (making a larger
    /// segment first when the step needs one), then one Ready frame per chunk, whose values the
    /// session sums straight from the segment.
    /// </summary>
    private static async Task ReadSharedLoopAsync(Connection connection, AggregationSession session, RankPort port, GradientExchangeMetrics metrics, CancellationToken ct)
    {
        var socket = connection.Socket;
        var frame = new byte[GradientSocketFrames.StepHeaderBytes];
        var chunkFloats = session.ChunkFloats;
        var unlinked = true;
        try
        {
            while (true)
            {
                if (!await SocketIo.TryReceiveExactlyAsync(socket, frame, ct).ConfigureAwait(false))
                {
                    session.Depart(port, clean: true);
                    return;
                }
                var (type, _, step, floats) = ReadRankFrame(frame);
                if (type != GradientSocketFrames.Step)
                {
                    session.Fail(AggregationErrors.Mismatch(session.TrialId, port.Rank, $"sent frame type {type} where a step header was due"));
                    return;
                }
                session.CheckStep(port.Rank, step, floats);
                var bytes = floats * sizeof(float);
                if (bytes > connection.Capacity)
                {
                    if (2 * bytes > int.MaxValue)
                    {
                        session.Fail(AggregationErrors.Mismatch(session.TrialId, port.Rank, $"sent a step of {floats} floats, more than shared memory carries (use the socket)"));
                        return;
                    }
                    var segment = SharedMemorySegment.Create(2 * bytes);
                    if (connection.Segment is { } old) session.DisposeWhenIdle(old);
                    connection.Segment = segment;
                    connection.Capacity = bytes;
                    unlinked = false;
                    // The writer tells the rank (before any mean of this step) and writes means there from now on.
                    port.Outbox.Writer.TryWrite(new Outgoing(null, step, 0, 0, null) { Segment = segment });
                }
                var memory = connection.Segment!.Memory;
                var chunks = (int)((floats + chunkFloats - 1) / chunkFloats);
                for (var index = 0; index < chunks; index++)
                {
                    await SocketIo.ReceiveExactlyAsync(socket, frame, ct).ConfigureAwait(false);
                    var (readyType, readyIndex, readyStep, readyFloats) = ReadRankFrame(frame);
                    if (readyType != GradientSocketFrames.Ready || readyIndex != (uint)index || readyStep != step || readyFloats != floats)
                    {
                        session.Fail(AggregationErrors.Mismatch(session.TrialId, port.Rank,
                            $"sent frame type {readyType} for chunk {readyIndex} of step {readyStep} where chunk {index} of step {step} was due"));
                        return;
                    }
                    if (!unlinked)
                    {
                        // The rank has it mapped: no name needs to outlive the two processes.
                        connection.Segment.Unlink();
                        unlinked = true;
                    }
                    var length = (int)Math.Min(chunkFloats, floats - (long)index * chunkFloats) * sizeof(float);
                    session.Receive(port.Rank, step, index, floats, new GradientPart(memory.Slice(index * chunkFloats * sizeof(float), length), null));
                    metrics.Received("shm", length);
                }
            }
        }
        catch (RpcException) when (session.Failure is not null)
        {
            // The session failed (this rank broke the protocol, or another rank failed it).
        }
        catch (Exception)
        {
            session.Depart(port, clean: false);
        }
        finally
        {
            if (!unlinked) connection.Segment?.Unlink();
        }
    }

    private static (uint Type, uint Argument, long Step, long Floats) ReadRankFrame(ReadOnlySpan<byte> frame) =>
        (BinaryPrimitives.ReadUInt32LittleEndian(frame), BinaryPrimitives.ReadUInt32LittleEndian(frame[4..]),
         BinaryPrimitives.ReadInt64LittleEndian(frame[8..]), BinaryPrimitives.ReadInt64LittleEndian(frame[16..]));

    /// <summary>The one writer of the rank's connection: drains its outbox in order.</summary>
    private static async Task WriteLoopAsync(Connection connection, AggregationSession session, RankPort port, CancellationToken ct)
    {
        var socket = connection.Socket;
        var outbox = port.Outbox.Reader;
        var joined = new byte[GradientSocketFrames.FrameHeaderBytes];
        GradientSocketFrames.WriteFrame(joined, GradientSocketFrames.Joined, connection.Shared ? 1u : 0u, 0);
        SharedMemorySegment? segment = null;
        try
        {
            while (await outbox.WaitToReadAsync(ct).ConfigureAwait(false))
            {
                while (outbox.TryRead(out var item))
                {
                    try
                    {
                        if (item.Segment is { } next)
                        {
                            segment = next;
                            await SocketIo.SendAllAsync(socket, SegmentFrame(next), ct).ConfigureAwait(false);
                        }
                        else if (item.Joined is not null)
                        {
                            await SocketIo.SendAllAsync(socket, joined, ct).ConfigureAwait(false);
                        }
                        else if (segment is not null)
                        {
                            // Shared memory: the means go into the rank's half, the socket says where.
                            var frame = item.Buffer!.Frame;
                            var means = frame[GradientSocketFrames.FrameHeaderBytes..];
                            var offset = segment.Length / 2 + item.Index * session.ChunkFloats * sizeof(float);
                            means.Span.CopyTo(segment.GetSpan().Slice(offset, means.Length));
                            await SocketIo.SendAllAsync(socket, frame[..GradientSocketFrames.FrameHeaderBytes], ct).ConfigureAwait(false);
                        }
                        else
                        {
                            await SocketIo.SendAllAsync(socket, item.Buffer!.Frame, ct).ConfigureAwait(false);
                        }
                    }
                    finally
                    {
                        item.Buffer?.Release();
                    }
                }
            }
        }
        catch (Exception) when (session.Failure is not null)
        {
            // Failed elsewhere; the connection ends with that failure.
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or SocketException or ObjectDisposedException)
        {
            // The rank's connection went away while we wrote to it.
            session.Depart(port, clean: false);
        }
        finally
        {
            // Chunks never written still hold a share of their pooled buffer.
            while (outbox.TryRead(out var left)) left.Buffer?.Release();
        }
    }

    private static byte[] SegmentFrame(SharedMemorySegment segment)
    {
        var path = System.Text.Encoding.UTF8.GetBytes(segment.Path);
        var frame = new byte[GradientSocketFrames.FrameHeaderBytes + path.Length];
        GradientSocketFrames.WriteFrame(frame, GradientSocketFrames.Segment, (uint)path.Length, segment.Length);
        path.CopyTo(frame, GradientSocketFrames.FrameHeaderBytes);
        return frame;
    }

    /// <summary>One rank's connection, and its shared-memory state when it has one.</summary>
    private sealed class Connection(Socket socket)
    {
        public Socket Socket { get; } = socket;

        /// <summary>Shared-memory mode granted.</summary>
        public bool Shared { get; set; }

        /// <summary>The reader's current segment (the writer switches on the Segment control item).</summary>
        public SharedMemorySegment? Segment { get; set; }

        /// <summary>Bytes per half of <see cref="Segment"/>.</summary>
        public long Capacity { get; set; }
    }

    /// <summary>Sends the failure frame, then closes without losing it (bounded).</summary>
    private static async Task EndWithAsync(Socket socket, RpcException failure)
    {
        try
        {
            using var bound = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            await SocketIo.SendAllAsync(socket, GradientSocketFrames.Failure(failure), bound.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or SocketException or ObjectDisposedException)
        {
            // The rank is gone already.
            return;
        }
        await CloseGracefullyAsync(socket).ConfigureAwait(false);
    }

    /// <summary>
    /// Sends FIN and reads until the rank closes too (bounded): closing with its bytes still unread
    /// would reset the connection, and a reset can discard the failure frame before the rank reads it.
    /// </summary>
    private static async Task CloseGracefullyAsync(Socket socket)
    {
        try
        {
            socket.Shutdown(SocketShutdown.Send);
            using var bound = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            var sink = ArrayPool<byte>.Shared.Rent(64 * 1024);
            try
            {
                while (await socket.ReceiveAsync(sink, SocketFlags.None, bound.Token).ConfigureAwait(false) > 0) { }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(sink);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or SocketException or ObjectDisposedException)
        {
            // Closed either way below.
        }
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Gradient socket listening on {Address}:{Port} (Unix socket for this machine: {Path})")]
        public static partial void Listening(ILogger logger, string address, int port, string path);

        [LoggerMessage(3, LogLevel.Warning, "No Unix gradient socket at {Path} ({Error}); workers on this machine use TCP")]
        public static partial void NoUnixSocket(ILogger logger, string path, string error);

        [LoggerMessage(2, LogLevel.Debug, "Gradient socket accept failed: {Error}")]
        public static partial void AcceptFailed(ILogger logger, string error);
    }
}

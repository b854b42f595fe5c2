using System.Buffers;
using System.Buffers.Binary;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using Orchestrator.Coordinator.Aggregation;
using Orchestrator.Protocol;
using Orchestrator.Protocol.V1;

namespace Orchestrator.Coordinator.Grpc.Gradients;

// One rank's connection: hello, admission to its trial's session, and how it ends (a failure frame, then a graceful close).
public sealed partial class GradientSocketServer
{
    /// <summary>One rank's connection: hello, admission, then the read and write loops until the session ends.</summary>
    private async Task ServeAsync(Socket socket, CancellationToken stopping)
    {
        await Task.Yield();
        using var owned = socket;
        if (socket.ProtocolType == ProtocolType.Tcp) socket.NoDelay = true;
        AggregationSession session;
        RankPort port;
        // TCP gets TLS when the coordinator serves it; the Unix socket stays on this machine.
        var tls = socket.ProtocolType == ProtocolType.Tcp ? _tls : null;
        await using var connection = new Connection(socket, tls is null ? new NetworkStream(socket, ownsSocket: false) : new SslStream(new NetworkStream(socket, ownsSocket: false)));
        try
        {
            var (header, sharedMemory) = await ReadHelloAsync(connection, tls, stopping).ConfigureAwait(false);
            // Shared memory only for a process of our own user on this machine: it must be able to
            // map the segment we make (mode 0600), and nobody else may.
            // (bf16 saves wire bytes; in shared memory there is no wire, so such a rank uses the socket.)
            connection.Shared = sharedMemory && !header.Bf16 && UnixPeer.Uid(socket) is { } peer && peer == UnixPeer.OwnUid();
            sessions.Validate(header);
            if (!await leases.IsCurrentAsync(header.TrialId, header.FencingToken, stopping).ConfigureAwait(false))
                AggregationFailure.ThrowStale(header.TrialId, header.FencingToken);
            (session, port) = sessions.Join(header);
        }
        catch (AggregationException refusal)
        {
            await EndWithAsync(connection, refusal.Failure).ConfigureAwait(false);
            return;
        }
        catch (AuthenticationException e)
        {
            // Plain text, or a certificate the client CA did not sign: no hello can follow.
            Log.TlsRefused(logger, socket.RemoteEndPoint?.ToString() ?? "?", e.Message);
            coordinatorMetrics.AuthRefused("tls", "worker");
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
            await EndWithAsync(connection, AggregationFailure.LeaseUnchecked(e.Message)).ConfigureAwait(false);
            return;
        }

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(stopping, session.Ended);
        // A coordinator that stops ends the trial's exchange for every rank, saying so.
        using var shutdown = stopping.Register(static s => ((AggregationSession)s!).Fail(AggregationFailure.ShuttingDown()), session);
        var reader = connection.Shared
            ? ReadSharedLoopAsync(connection, session, port, metrics, stop.Token)
            : ReadLoopAsync(connection.Stream, session, port, metrics, socket.AddressFamily == AddressFamily.Unix ? "unix" : "tcp", stop.Token);
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
        if (session.Failure is { } failure) await EndWithAsync(connection, failure).ConfigureAwait(false);
        else await CloseGracefullyAsync(connection).ConfigureAwait(false);
    }

    private async Task<(GradientStreamSpec Header, bool SharedMemory)> ReadHelloAsync(Connection connection, SslServerAuthenticationOptions? tls, CancellationToken stopping)
    {
        using var bound = CancellationTokenSource.CreateLinkedTokenSource(stopping);
        // A client that connects and says nothing must not hold a connection forever.
        bound.CancelAfter(options.Value.JoinTimeout);
        if (tls is not null) await ((SslStream)connection.Stream).AuthenticateAsServerAsync(tls, bound.Token).ConfigureAwait(false);
        var socket = connection.Stream;
        var preamble = new byte[GradientSocketFrames.PreambleBytes];
        await SocketIo.ReceiveExactlyAsync(socket, preamble, bound.Token).ConfigureAwait(false);
        if (BinaryPrimitives.ReadUInt32LittleEndian(preamble) != GradientSocketFrames.Magic)
            AggregationFailure.ThrowInvalid("this is the coordinator's gradient socket: a connection must start with the gradient socket's magic (docs/data-parallel.md)");
        var length = BinaryPrimitives.ReadInt32LittleEndian(preamble.AsSpan(4));
        if (length < 1 || length > GradientSocketFrames.MaxHelloBytes)
            AggregationFailure.ThrowInvalid($"a gradient socket hello of {length} bytes (1 to {GradientSocketFrames.MaxHelloBytes} allowed)");
        var body = new byte[length];
        await SocketIo.ReceiveExactlyAsync(socket, body, bound.Token).ConfigureAwait(false);
        GradientSocketHello hello;
        try
        {
            hello = GradientSocketHello.Parser.ParseFrom(body);
        }
        catch (Google.Protobuf.InvalidProtocolBufferException e)
        {
            AggregationFailure.ThrowInvalid("the gradient socket hello is not a GradientSocketHello: " + e.Message);
            throw;
        }
        // A gradient exchange is a worker's: a user's or viewer's token is refused like none.
        if (credentials.RolesOf(hello.Authorization) is not { } roles || !Security.AccessRules.Allows(roles, Security.Roles.Worker))
        {
            coordinatorMetrics.AuthRefused("unauthenticated", "worker");
            AggregationFailure.ThrowUnauthenticated();
        }
        if (hello.Header is null) AggregationFailure.ThrowInvalid("the gradient socket hello carries no header");
        return (GradientMapping.FromProto(hello.Header), hello.SharedMemory);
    }


    /// <summary>One rank's connection, and its shared-memory state when it has one.</summary>
    private sealed class Connection(Socket socket, Stream stream) : IAsyncDisposable
    {
        public Socket Socket { get; } = socket;

        /// <summary>The socket's stream: TLS over it on TCP when the coordinator serves TLS.</summary>
        public Stream Stream { get; } = stream;

        public ValueTask DisposeAsync() => Stream.DisposeAsync();

        /// <summary>Shared-memory mode granted.</summary>
        public bool Shared { get; set; }

        /// <summary>The reader's current segment (the writer switches on the Segment control item).</summary>
        public SharedMemorySegment? Segment { get; set; }

        /// <summary>Bytes per half of <see cref="Segment"/>.</summary>
        public long Capacity { get; set; }
    }

    /// <summary>Sends the failure frame, then closes without losing it (bounded).</summary>
    private static async Task EndWithAsync(Connection connection, AggregationFailure failure)
    {
        try
        {
            using var bound = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            await SocketIo.SendAllAsync(connection.Stream, GradientMapping.ToSocketFrame(failure), bound.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or SocketException or ObjectDisposedException)
        {
            // The rank is gone already.
            return;
        }
        await CloseGracefullyAsync(connection).ConfigureAwait(false);
    }

    /// <summary>
    /// Sends FIN and reads until the rank closes too (bounded): closing with its bytes still unread
    /// would reset the connection, and a reset can discard the failure frame before the rank reads it.
    /// </summary>
    private static async Task CloseGracefullyAsync(Connection connection)
    {
        var socket = connection.Socket;
        try
        {
            // TLS ends with its close_notify; the sink below reads past the rank's own.
            if (connection.Stream is SslStream { IsAuthenticated: true } ssl) await ssl.ShutdownAsync().ConfigureAwait(false);
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
}

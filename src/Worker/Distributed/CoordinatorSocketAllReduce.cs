using System.Runtime.CompilerServices;
using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Runtime.InteropServices;
using Orchestrator.Numerics;
using Orchestrator.Protocol;
using Orchestrator.Protocol.V1;

namespace Orchestrator.Worker.Distributed;

/// <summary>
/// All-reduce through the coordinator over its gradient socket: the <c>coordinator</c>
/// aggregation mode of <see cref="CoordinatorAllReduce"/> on a plain TCP connection
/// (<see cref="GradientSocketFrames"/>) instead of a gRPC stream. Same session on the coordinator,
/// same means, bits, checks and failures; the gradient bytes skip HTTP/2 framing and protobuf.
/// </summary>
/// <remarks>
/// <para>Per step the rank sends a 24-byte header and then its whole buffer in one send, straight
/// from the caller's memory; the coordinator answers with one frame per chunk, whose means are
/// received straight into the caller's buffer. Writing chunk k's mean in place is safe while later
/// chunks are still being sent: the mean of chunk k exists only after the coordinator received
/// this rank's chunk k, so the kernel has already copied those bytes out.</para>
/// <para><see cref="CoordinatorAllReduceOptions.Timeout"/> bounds the silence between two frames
/// from the coordinator; a stalled or dead peer is reported sooner, by the coordinator, naming
/// the rank.</para>
/// </remarks>
public sealed class CoordinatorSocketAllReduce : CoordinatorCollective
{
    private readonly Socket _socket;
    // The socket's stream: TLS over TCP when the coordinator serves TLS, else the socket itself.
    private readonly Stream _stream;
    private readonly byte[] _stepHeader = new byte[GradientSocketFrames.StepHeaderBytes];
    private readonly byte[] _frame = new byte[GradientSocketFrames.FrameHeaderBytes];
    private readonly byte[] _readyFrame = new byte[GradientSocketFrames.StepHeaderBytes];
    private readonly bool _shared;
    private readonly byte[]? _sendStaging;    // bf16: one chunk, narrowed
    private readonly byte[]? _receiveStaging; // bf16: one chunk of means, to widen
    private SharedMemorySegment? _segment;
    private long _capacity;

    private CoordinatorSocketAllReduce(CoordinatorAllReduceOptions options, Socket socket, Stream stream, bool shared)
        : base(options)
    {
        _socket = socket;
        _stream = stream;
        _shared = shared;
        if (options.Wire == WireFormat.Bf16)
        {
            _sendStaging = new byte[options.ChunkFloats * sizeof(ushort)];
            _receiveStaging = new byte[options.ChunkFloats * sizeof(ushort)];
        }
    }

    /// <summary>True when gradients move through shared memory (a rank on the coordinator's machine), not the socket.</summary>
    public bool SharedMemory => _shared;

    /// <summary>
    /// Where to connect for an assignment's gradient endpoint: ":PORT" is that port on the host of
    /// <paramref name="coordinator"/> (the address this worker already reaches the coordinator at),
    /// "HOST:PORT" names the host.
    /// </summary>
    /// <exception cref="FormatException">Not ":PORT" or "HOST:PORT" with a port from 1 to 65535.</exception>
    public static (string Host, int Port) ResolveEndpoint(string advertised, Uri coordinator)
    {
        ArgumentNullException.ThrowIfNull(advertised);
        ArgumentNullException.ThrowIfNull(coordinator);
        var colon = advertised.LastIndexOf(':');
        if (colon < 0 || !int.TryParse(advertised.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
            throw new FormatException($"gradient endpoint '{advertised}' is not ':PORT' or 'HOST:PORT'");
        var host = advertised[..colon].Trim('[', ']');
        return (host.Length == 0 ? coordinator.IdnHost.Trim('[', ']') : host, port);
    }

    /// <summary>
    /// Connects this rank to the coordinator's gradient socket and waits until every rank of the
    /// trial has joined (bounded by <see cref="CoordinatorAllReduceOptions.ConnectTimeout"/>).
    /// </summary>
    /// <exception cref="CollectiveException">Unreachable, refused (stale fencing token, inconsistent ranks, wrong token) or not every rank joined.</exception>
    public static Task<CoordinatorSocketAllReduce> ConnectAsync(CoordinatorAllReduceOptions options, string host, int port, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(host);
        return ConnectCoreAsync(options, new DnsEndPoint(host, port), $"{host}:{port}", false, cancellationToken, host);
    }

    /// <summary>
    /// As <see cref="ConnectAsync"/>, through the coordinator's Unix domain socket at
    /// <paramref name="path"/> (a worker on the coordinator's machine). With
    /// <paramref name="sharedMemory"/> it asks for the shared-memory mode, which the coordinator
    /// grants to processes of its own user (<see cref="SharedMemory"/> says whether it did).
    /// </summary>
    /// <exception cref="CollectiveException">As <see cref="ConnectAsync"/>; when nothing listens at the path, its inner exception is the <see cref="SocketException"/>.</exception>
    public static Task<CoordinatorSocketAllReduce> ConnectUnixAsync(CoordinatorAllReduceOptions options, string path, CancellationToken cancellationToken, bool sharedMemory = true)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return ConnectCoreAsync(options, new UnixDomainSocketEndPoint(path), "unix:" + path, sharedMemory, cancellationToken);
    }

    private static async Task<CoordinatorSocketAllReduce> ConnectCoreAsync(CoordinatorAllReduceOptions options, EndPoint endpoint, string where, bool sharedMemory,
        CancellationToken cancellationToken, string? tlsHost = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var socket = endpoint is UnixDomainSocketEndPoint
            ? new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
            : new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        using var join = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        join.CancelAfter(options.ConnectTimeout);
        try
        {
            await socket.ConnectAsync(endpoint, join.Token).ConfigureAwait(false);
            Stream stream = new NetworkStream(socket, ownsSocket: false);
            // Over TCP to a coordinator that serves TLS, the socket does too (a Unix socket stays on this machine).
            if (tlsHost is not null && options.Tls is { } tls)
                stream = await AuthenticateAsync(stream, tls, tlsHost, options, where, join.Token).ConfigureAwait(false);
            var hello = new GradientSocketHello
            {
                Header = new GradientStreamHeader
                {
                    TrialId = options.TrialId,
                    FencingToken = options.FencingToken,
                    Rank = options.Rank,
                    WorldSize = options.WorldSize,
                    ChunkFloats = options.ChunkFloats,
                    Bf16 = options.Wire == WireFormat.Bf16,
                },
                Authorization = options.Headers?.GetValue("authorization") ?? "",
                SharedMemory = sharedMemory,
            };
            await SocketIo.SendAllAsync(stream, GradientSocketFrames.Hello(hello), join.Token).ConfigureAwait(false);
            // The coordinator says Joined once every rank of the trial is in, or why not.
            var frame = new byte[GradientSocketFrames.FrameHeaderBytes];
            await SocketIo.ReceiveExactlyAsync(stream, frame, join.Token).ConfigureAwait(false);
            var (type, argument, _) = GradientSocketFrames.ReadFrame(frame);
            if (type == GradientSocketFrames.Failed) throw await ReadFailureAsync(stream, argument, join.Token).ConfigureAwait(false);
            if (type != GradientSocketFrames.Joined)
                throw new CollectiveException(CollectiveFailure.ConnectFailed, options.Rank, null,
                    $"Joining the gradient exchange of trial {options.TrialId} failed on rank {options.Rank}: {where} answered frame type {type}; is it a coordinator's gradient socket?");
            return new CoordinatorSocketAllReduce(options, socket, stream, shared: argument == 1);
        }
        catch (Exception e)
        {
            socket.Dispose();
            cancellationToken.ThrowIfCancellationRequested();
            if (e is CollectiveException) throw;
            if (e is SocketException s && !join.IsCancellationRequested)
                throw new CollectiveException(CollectiveFailure.ConnectFailed, options.Rank, null,
                    $"Joining the gradient exchange of trial {options.TrialId} failed on rank {options.Rank}: cannot reach the coordinator's gradient socket at {where} ({s.SocketErrorCode}).", e);
            throw CoordinatorAllReduce.Describe(e, options, join.IsCancellationRequested ? options.ConnectTimeout : null, joining: true);
        }
    }

    /// <summary>The TLS handshake with the coordinator's gradient socket, checked as the worker's gRPC calls are.</summary>
    private static async Task<Stream> AuthenticateAsync(Stream inner, SslClientAuthenticationOptions tls, string host, CoordinatorAllReduceOptions options, string where, CancellationToken ct)
    {
        var ssl = new SslStream(inner, leaveInnerStreamOpen: false);
        try
        {
            await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = host,
                RemoteCertificateValidationCallback = tls.RemoteCertificateValidationCallback,
                ClientCertificates = tls.ClientCertificates,
                EnabledSslProtocols = tls.EnabledSslProtocols,
            }, ct).ConfigureAwait(false);
            return ssl;
        }
        catch (AuthenticationException e)
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            throw new CollectiveException(CollectiveFailure.ConnectFailed, options.Rank, null,
                $"Joining the gradient exchange of trial {options.TrialId} failed on rank {options.Rank}: the TLS handshake with the coordinator's gradient socket at {where} failed ({e.Message}).", e);
        }
    }

    private protected override async Task ExchangeAsync(Memory<float> buffer, long step, CancellationTokenSource idle, StrongBox<Task> send)
    {
        using var bytes = new CoordinatorAllReduce.FloatBytes(buffer);
        if (_shared)
        {
            GradientSocketFrames.WriteStep(_stepHeader, step, buffer.Length);
            await SocketIo.SendAllAsync(_stream, _stepHeader, idle.Token).ConfigureAwait(false);
            if (bytes.Memory.Length > _capacity) await ReceiveSegmentAsync(idle.Token).ConfigureAwait(false);
            send.Value = SendReadyAsync(bytes.Memory, buffer.Length, step, idle.Token);
        }
        else
        {
            send.Value = SendStepAsync(bytes.Memory, buffer.Length, step, idle.Token);
        }
        await ReceiveMeansAsync(bytes.Memory, buffer.Length, step, idle).ConfigureAwait(false);
        await send.Value.ConfigureAwait(false);
    }

    private protected override Exception Translate(Exception error) => error is IOException or SocketException
        ? new CollectiveException(CollectiveFailure.PeerClosed, Rank, null,
            $"All-reduce failed on rank {Rank} of {WorldSize}: the coordinator's gradient socket closed mid-collective ({error.Message}); the coordinator stopped, or the connection broke.", error)
        : error;

    private protected override void Abandon() => _socket.Dispose();

    /// <summary>
    /// Sends the step. A failed send does not stop the receiver: a broken connection fails the
    /// read too, and when the coordinator ended the step it has sent why (the failure frame, naming
    /// the rank to blame), which the read must get to rather than be cancelled before.
    /// </summary>
    private async Task SendStepAsync(Memory<byte> bytes, long floats, long step, CancellationToken ct)
    {
        GradientSocketFrames.WriteStep(_stepHeader, step, floats);
        await SocketIo.SendAllAsync(_stream, _stepHeader, ct).ConfigureAwait(false);
        if (_sendStaging is null)
        {
            await SocketIo.SendAllAsync(_stream, bytes, ct).ConfigureAwait(false);
            return;
        }
        // bf16: narrow a chunk, send it (the send returns once the kernel has the bytes), repeat.
        var chunkBytes = Options.ChunkFloats * sizeof(float);
        for (var offset = 0; offset < bytes.Length; offset += chunkBytes)
        {
            var values = MemoryMarshal.Cast<byte, float>(bytes.Span.Slice(offset, Math.Min(chunkBytes, bytes.Length - offset)));
            BFloat16Codec.Narrow(values, MemoryMarshal.Cast<byte, ushort>(_sendStaging.AsSpan()));
            await SocketIo.SendAllAsync(_stream, _sendStaging.AsMemory(0, values.Length * sizeof(ushort)), ct).ConfigureAwait(false);
        }
    }

    /// <summary>Shared memory: copies chunk by chunk into the segment, telling the coordinator after each.</summary>
    private async Task SendReadyAsync(Memory<byte> bytes, long floats, long step, CancellationToken ct)
    {
        var chunkBytes = Options.ChunkFloats * sizeof(float);
        var segment = _segment!;
        for (int offset = 0, index = 0; offset < bytes.Length; offset += chunkBytes, index++)
        {
            var length = Math.Min(chunkBytes, bytes.Length - offset);
            bytes.Span.Slice(offset, length).CopyTo(segment.GetSpan().Slice(offset, length));
            GradientSocketFrames.WriteStep(_readyFrame, step, floats, GradientSocketFrames.Ready, (uint)index);
            await SocketIo.SendAllAsync(_stream, _readyFrame, ct).ConfigureAwait(false);
        }
    }

    /// <summary>Shared memory: the coordinator made a larger segment for this step; map it.</summary>
    private async Task ReceiveSegmentAsync(CancellationToken ct)
    {
        await SocketIo.ReceiveExactlyAsync(_stream, _frame, ct).ConfigureAwait(false);
        var (type, argument, length) = GradientSocketFrames.ReadFrame(_frame);
        if (type == GradientSocketFrames.Failed) throw await ReadFailureAsync(_stream, argument, ct).ConfigureAwait(false);
        if (type != GradientSocketFrames.Segment || argument > 4096 || length < 2)
            throw new CollectiveException(CollectiveFailure.Mismatch, Rank, null,
                $"All-reduce failed on rank {Rank} of {WorldSize}: the coordinator sent frame type {type} where a shared-memory segment was due.");
        var path = new byte[argument];
        await SocketIo.ReceiveExactlyAsync(_stream, path, ct).ConfigureAwait(false);
        var segment = SharedMemorySegment.Open(System.Text.Encoding.UTF8.GetString(path), length);
        ((IDisposable?)_segment)?.Dispose();
        _segment = segment;
        _capacity = length / 2;
    }

    /// <summary>
    /// Per Mean frame, puts that chunk's means into the caller's buffer: copied out of the segment
    /// (shared memory), received straight into place (fp32), or received and widened (bf16).
    /// </summary>
    private async Task ReceiveMeansAsync(Memory<byte> bytes, long floats, long step, CancellationTokenSource idle)
    {
        var chunkBytes = Options.ChunkFloats * sizeof(float);
        var chunks = (int)((floats + Options.ChunkFloats - 1) / Options.ChunkFloats);
        for (var index = 0; index < chunks; index++)
        {
            await SocketIo.ReceiveExactlyAsync(_stream, _frame, idle.Token).ConfigureAwait(false);
            var (type, argument, frameStep) = GradientSocketFrames.ReadFrame(_frame);
            if (type == GradientSocketFrames.Failed) throw await ReadFailureAsync(_stream, argument, idle.Token).ConfigureAwait(false);
            if (type != GradientSocketFrames.Mean || frameStep != step || argument != (uint)index)
                throw new CollectiveException(CollectiveFailure.Mismatch, Rank, null,
                    $"All-reduce failed on rank {Rank} of {WorldSize}: the coordinator sent frame type {type} for chunk {argument} of step {frameStep} where chunk {index} of step {step} was due.");
            var offset = index * chunkBytes;
            var slice = bytes.Slice(offset, Math.Min(chunkBytes, bytes.Length - offset));
            if (_shared)
            {
                _segment!.GetSpan().Slice((int)_capacity + offset, slice.Length).CopyTo(slice.Span);
            }
            else if (_receiveStaging is null)
            {
                await SocketIo.ReceiveExactlyAsync(_stream, slice, idle.Token).ConfigureAwait(false);
            }
            else
            {
                var halves = _receiveStaging.AsMemory(0, slice.Length / 2);
                await SocketIo.ReceiveExactlyAsync(_stream, halves, idle.Token).ConfigureAwait(false);
                BFloat16Codec.Widen(MemoryMarshal.Cast<byte, ushort>(halves.Span), MemoryMarshal.Cast<byte, float>(slice.Span));
            }
            idle.CancelAfter(Options.Timeout);
        }
    }

    /// <summary>
    /// Leaves the exchange: between steps the coordinator takes that as this rank finishing;
    /// mid-collective (or after a failure) the other ranks fail.
    /// </summary>
    public override async ValueTask DisposeAsync()
    {
        if (Disposed) return;
        Disposed = true;
        if (Idle)
        {
            try
            {
                // A clean close: end our half (TLS's close_notify first), then wait for the coordinator to end its half (bounded).
                if (_stream is SslStream ssl) await ssl.ShutdownAsync().ConfigureAwait(false);
                _socket.Shutdown(SocketShutdown.Send);
                using var bound = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                while (await _socket.ReceiveAsync(_frame, SocketFlags.None, bound.Token).ConfigureAwait(false) > 0) { }
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException or IOException)
            {
                // Already gone; closing below is all that is left to do.
            }
        }
        await _stream.DisposeAsync().ConfigureAwait(false);
        _socket.Dispose();
        // Unmapped only when no collective still copies through it (disposed mid-call, it stays mapped).
        if (!Busy) ((IDisposable?)_segment)?.Dispose();
    }

    /// <summary>Reads the failure the coordinator ended the connection with: the same status the gRPC stream would carry.</summary>
    private static async Task<Exception> ReadFailureAsync(Stream stream, uint length, CancellationToken ct)
    {
        if (length > GradientSocketFrames.MaxHelloBytes)
            return new IOException($"the coordinator announced a failure of {length} bytes");
        var payload = new byte[length];
        await SocketIo.ReceiveExactlyAsync(stream, payload, ct).ConfigureAwait(false);
        return GradientSocketFrames.ToRpcException(GradientSocketFailure.Parser.ParseFrom(payload));
    }
}

using System.Buffers;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Orchestrator.Numerics;
using Orchestrator.Protocol.V1;

namespace Orchestrator.Worker.Distributed;

/// <summary>
/// All-reduce through the coordinator (the <c>coordinator</c> aggregation mode): each rank streams
/// its buffer in chunks to the coordinator's GradientExchange service and receives the mean of
/// each chunk as soon as every rank has sent it.
/// </summary>
/// <remarks>
/// <para>One long-lived bidirectional stream per rank per trial attempt. Chunks are sent straight
/// from the caller's buffer (<see cref="UnsafeByteOperations.UnsafeWrap"/>, no copy) while the
/// means of earlier chunks are written back into it; that is safe in place because the mean of
/// chunk k exists only after the coordinator has received this rank's chunk k.</para>
/// <para>The coordinator sums in rank order and sends every rank the same bytes, so replicas stay
/// bit-identical. It also watches the ranks: a peer that disconnects or stalls fails the step for
/// everyone with a status naming that rank, which this class turns into a
/// <see cref="CollectiveException"/>. <see cref="CoordinatorAllReduceOptions.Timeout"/> bounds the
/// case the coordinator itself cannot report (it hangs or is unreachable).</para>
/// <para>Compared with <see cref="RingAllReduce"/> the coordinator's link carries W times the
/// buffer each way per step, and every byte pays gRPC's framing (bench/README.md); it needs no
/// worker-to-worker connectivity.</para>
/// </remarks>
public sealed class CoordinatorAllReduce : CoordinatorCollective
{
    private readonly AsyncDuplexStreamingCall<GradientChunk, GradientChunk> _call;
    private readonly CancellationTokenSource _life;
    private readonly GrpcChannel? _ownedChannel;

    private CoordinatorAllReduce(CoordinatorAllReduceOptions options, AsyncDuplexStreamingCall<GradientChunk, GradientChunk> call,
        CancellationTokenSource life, GrpcChannel? ownedChannel)
        : base(options)
    {
        _call = call;
        _life = life;
        _ownedChannel = ownedChannel;
    }

    /// <summary>
    /// A channel for gradient traffic only: its own HTTP/2 connection, so that gradient bytes never
    /// queue behind (or ahead of) the worker's control stream, with large flow-control windows so
    /// that a chunk in flight never waits for a window update.
    /// </summary>
    public static GrpcChannel CreateChannel(Uri coordinator, System.Net.Security.SslClientAuthenticationOptions? tls = null)
    {
        var handler = new SocketsHttpHandler
        {
            InitialHttp2StreamWindowSize = 16 * 1024 * 1024,
            KeepAlivePingDelay = TimeSpan.FromSeconds(20),
            KeepAlivePingTimeout = TimeSpan.FromSeconds(20),
        };
        // The worker's TLS settings (its CA, its client certificate), as on its control channel.
        if (tls is not null) handler.SslOptions = tls;
        return GrpcChannel.ForAddress(coordinator, new GrpcChannelOptions
        {
            MaxSendMessageSize = 8 * 1024 * 1024,
            MaxReceiveMessageSize = 8 * 1024 * 1024,
            HttpHandler = handler,
        });
    }

    /// <summary>
    /// Opens this rank's stream on its own channel to <paramref name="coordinator"/> and waits until
    /// every rank of the trial has joined (bounded by <see cref="CoordinatorAllReduceOptions.ConnectTimeout"/>).
    /// </summary>
    /// <exception cref="CollectiveException">Refused (stale fencing token, inconsistent ranks) or not every rank joined.</exception>
    public static async Task<CoordinatorAllReduce> ConnectAsync(CoordinatorAllReduceOptions options, Uri coordinator, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var channel = CreateChannel(coordinator, options.Tls);
        try
        {
            return await ConnectCoreAsync(options, channel.CreateCallInvoker(), channel, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            channel.Dispose();
            throw;
        }
    }

    /// <summary>As <see cref="ConnectAsync(CoordinatorAllReduceOptions, Uri, CancellationToken)"/>, on a channel the caller owns.</summary>
    public static Task<CoordinatorAllReduce> ConnectAsync(CoordinatorAllReduceOptions options, CallInvoker callInvoker, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        return ConnectCoreAsync(options, callInvoker, null, cancellationToken);
    }

    private static async Task<CoordinatorAllReduce> ConnectCoreAsync(CoordinatorAllReduceOptions options, CallInvoker callInvoker,
        GrpcChannel? ownedChannel, CancellationToken ct)
    {
        var life = new CancellationTokenSource();
        // No deadline: the stream lives as long as the trial. Each collective bounds itself instead
        // (Timeout), and joining is bounded by ConnectTimeout below.
        var call = new GradientExchange.GradientExchangeClient(callInvoker).AllReduce(options.Headers, cancellationToken: life.Token);
        using var join = CancellationTokenSource.CreateLinkedTokenSource(ct);
        join.CancelAfter(options.ConnectTimeout);
        try
        {
            await call.RequestStream.WriteAsync(new GradientChunk
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
            }, join.Token).ConfigureAwait(false);
            // The coordinator echoes the header once every rank of the trial has joined.
            if (!await call.ResponseStream.MoveNext(join.Token).ConfigureAwait(false) || call.ResponseStream.Current.Header is null)
                throw new CollectiveException(CollectiveFailure.ConnectFailed, options.Rank, null,
                    $"Joining the gradient exchange of trial {options.TrialId} failed on rank {options.Rank}: the coordinator ended the stream without admitting it.");
            return new CoordinatorAllReduce(options, call, life, ownedChannel);
        }
        catch (Exception e)
        {
            call.Dispose();
            life.Dispose();
            ct.ThrowIfCancellationRequested();
            if (e is CollectiveException) throw;
            var timedOut = join.IsCancellationRequested;
            throw Describe(e, options, timedOut ? options.ConnectTimeout : null, joining: true);
        }
    }

    private protected override Task ExchangeAsync(Memory<float> buffer, long step, CancellationTokenSource idle, StrongBox<Task> send)
    {
        send.Value = SendAsync(buffer, step, idle);
        return ReceiveAsync(buffer, step, idle);
    }

    private protected override void Abandon() => _call.Dispose();

    /// <summary>
    /// Sends the step's chunks. A write fails only when the call is over (RpcException, or
    /// InvalidOperationException once it completed); the receiver then reads the status the
    /// coordinator ended it with (the rank to blame, the kind of failure), so a failed send does not
    /// cancel the receiver, which would lose that status.
    /// </summary>
    private async Task SendAsync(Memory<float> buffer, long step, CancellationTokenSource idle)
    {
        using var bytes = new FloatBytes(buffer);
        var memory = bytes.Memory;
        var chunk = Options.ChunkFloats * sizeof(float);
        for (int offset = 0, index = 0; offset < memory.Length; offset += chunk, index++)
        {
            var length = Math.Min(chunk, memory.Length - offset);
            ByteString data;
            if (Options.Wire == WireFormat.Bf16)
            {
                // A fresh array per chunk: the stream may still hold the previous message's bytes.
                var narrowed = new byte[length / 2];
                BFloat16Codec.Narrow(MemoryMarshal.Cast<byte, float>(memory.Span.Slice(offset, length)), MemoryMarshal.Cast<byte, ushort>(narrowed.AsSpan()));
                data = UnsafeByteOperations.UnsafeWrap(narrowed);
            }
            else
            {
                data = UnsafeByteOperations.UnsafeWrap(memory.Slice(offset, length));
            }
            var message = new GradientChunk { Step = step, Index = index, StepFloats = buffer.Length, Data = data };
            await _call.RequestStream.WriteAsync(message, idle.Token).ConfigureAwait(false);
        }
    }

    private async Task ReceiveAsync(Memory<float> buffer, long step, CancellationTokenSource idle)
    {
        var chunk = Options.ChunkFloats;
        var chunks = (buffer.Length + chunk - 1) / chunk;
        var responses = _call.ResponseStream;
        for (var index = 0; index < chunks; index++)
        {
            if (!await responses.MoveNext(idle.Token).ConfigureAwait(false))
                throw new CollectiveException(CollectiveFailure.PeerClosed, Rank, null,
                    $"All-reduce failed on rank {Rank} of {WorldSize}: the coordinator ended the gradient stream mid-collective.");
            var mean = responses.Current;
            var offset = index * chunk;
            var length = Math.Min(chunk, buffer.Length - offset);
            if (mean.Step != step || mean.Index != index || mean.Data.Length != length * Options.ValueBytes)
                ThrowUnexpectedChunk(mean, step, index, length);
            if (Options.Wire == WireFormat.Bf16) BFloat16Codec.Widen(MemoryMarshal.Cast<byte, ushort>(mean.Data.Span), buffer.Span.Slice(offset, length));
            else mean.Data.Span.CopyTo(MemoryMarshal.AsBytes(buffer.Span.Slice(offset, length)));
            idle.CancelAfter(Options.Timeout);
        }
    }

    /// <summary>
    /// Leaves the exchange: between steps the coordinator takes that as this rank finishing;
    /// mid-collective (or after a failure) the other ranks fail, as with a ring.
    /// </summary>
    public override async ValueTask DisposeAsync()
    {
        if (Disposed) return;
        Disposed = true;
        if (Idle)
        {
            try
            {
                // A clean close: end our half, then let the coordinator end its half (bounded).
                using var bound = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                await _call.RequestStream.CompleteAsync().WaitAsync(bound.Token).ConfigureAwait(false);
                while (await _call.ResponseStream.MoveNext(bound.Token).ConfigureAwait(false)) { }
            }
            catch (Exception e) when (e is RpcException or OperationCanceledException or InvalidOperationException or IOException)
            {
                // Already gone; disposing below is all that is left to do.
            }
        }
        _call.Dispose();
        await _life.CancelAsync().ConfigureAwait(false);
        _life.Dispose();
        _ownedChannel?.Dispose();
    }

    /// <summary>Turns what the call threw into the failure a user can act on; the coordinator's trailers name the rank.</summary>
    internal static Exception Describe(Exception error, CoordinatorAllReduceOptions options, TimeSpan? timedOut, bool joining)
    {
        if (error is CollectiveException) return error;
        var where = joining
            ? $"Joining the gradient exchange of trial {options.TrialId} failed on rank {options.Rank}"
            : $"All-reduce failed on rank {options.Rank} of {options.WorldSize}";
        if (timedOut is { } t)
            return new CollectiveException(joining ? CollectiveFailure.ConnectFailed : CollectiveFailure.Timeout, options.Rank, null,
                joining
                    ? $"{where}: not every rank joined within {t.TotalSeconds:0.###} s (or the coordinator is unreachable)."
                    : $"{where}: the coordinator sent nothing for {t.TotalSeconds:0.###} s (it hangs, or is unreachable).", error);
        if (error is not RpcException rpc)
            return new CollectiveException(CollectiveFailure.PeerClosed, options.Rank, null, $"{where}: {error.Message}", error);
        var detail = rpc.Status.Detail;
        var peer = int.TryParse(rpc.Trailers.GetValue(GradientExchange.FailedRankTrailer), NumberStyles.None, CultureInfo.InvariantCulture, out var r) ? r : (int?)null;
        var failure = rpc.StatusCode switch
        {
            StatusCode.Aborted => rpc.Trailers.GetValue(GradientExchange.FailureTrailer) switch
            {
                "timeout" => joining ? CollectiveFailure.ConnectFailed : CollectiveFailure.Timeout,
                "mismatch" => CollectiveFailure.Mismatch,
                _ => joining ? CollectiveFailure.ConnectFailed : CollectiveFailure.PeerClosed,
            },
            StatusCode.InvalidArgument or StatusCode.AlreadyExists => CollectiveFailure.Mismatch,
            _ => joining ? CollectiveFailure.ConnectFailed : CollectiveFailure.PeerClosed,
        };
        var message = rpc.StatusCode == StatusCode.Aborted
            ? $"{where}: {detail}"
            : $"{where}: the coordinator answered {rpc.StatusCode}: {detail}";
        return new CollectiveException(failure, options.Rank, peer, message, error);
    }

    [DoesNotReturn, MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowUnexpectedChunk(GradientChunk mean, long step, int index, int floats) =>
        throw new CollectiveException(CollectiveFailure.Mismatch, Rank, null,
            $"All-reduce failed on rank {Rank} of {WorldSize}: the coordinator sent chunk {mean.Index} of step {mean.Step} ({mean.Data.Length} bytes) where chunk {index} of step {step} ({floats * Options.ValueBytes} bytes) was due.");

    /// <summary>The caller's floats seen as bytes, for <see cref="UnsafeByteOperations.UnsafeWrap"/> (no copy).</summary>
    internal sealed class FloatBytes(Memory<float> floats) : MemoryManager<byte>
    {
        public override Span<byte> GetSpan() => MemoryMarshal.AsBytes(floats.Span);

        public override MemoryHandle Pin(int elementIndex = 0)
        {
            // Chunks start on float boundaries; an offset inside a float has no use here.
            if (elementIndex % sizeof(float) != 0) throw new ArgumentOutOfRangeException(nameof(elementIndex));
            return floats.Slice(elementIndex / sizeof(float)).Pin();
        }

        public override void Unpin() { }

        protected override void Dispose(bool disposing) { }
    }
}

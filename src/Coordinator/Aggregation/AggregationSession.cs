using System.Buffers;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Threading.Channels;
using Google.Protobuf;
using Grpc.Core;
using Orchestrator.Numerics;
using Orchestrator.Protocol.V1;

namespace Orchestrator.Coordinator.Aggregation;

/// <summary>
/// The gradient exchange of one trial attempt (trial id + fencing token): W rank streams, the
/// chunks of the step in flight, and a watchdog. Chunk k of a step is reduced on the thread that
/// delivers its last part, then queued to every rank's outbox; each outbox has one writer loop
/// (the rank's call handler).
/// </summary>
/// <remarks>
/// <para>At most one step is in flight: a rank sends step s+1 only after it received all of step
/// s, which exists only once every rank sent all of step s. A chunk slot therefore holds the W
/// parts of one step until its last part arrives; they are then taken out and summed outside the
/// lock, so ranks delivering other chunks never wait for a sum.</para>
/// <para>Parts are summed in rank order (0 + 1 + … + W−1), whatever order they arrived in, so the
/// mean is the same bits run after run; every rank gets those same bytes.</para>
/// </remarks>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA1001",
    Justification = "The end source has no timer to release, and handlers may still read its token after the registry forgot the session.")]
internal sealed class AggregationSession
{
    private readonly object _gate = new();
    private readonly GradientAggregationOptions _options;
    private readonly TimeProvider _clock;
    private readonly RankPort?[] _ranks;
    private readonly int[] _sent;             // chunks each rank sent of the current step
    private readonly long[] _waitingSince;    // when the others started waiting for this rank (0: nobody waits)
    private readonly CancellationTokenSource _ended = new();
    private readonly GradientExchangeMetrics? _metrics;
    private readonly long _createdAt;
    private GradientPart[][] _slots = [];
    private int[] _arrived = [];
    private long _step;
    private long _stepFloats = -1;            // -1: no chunk of the current step yet
    private int _stepChunks;
    private int _reducedChunks;
    private int _joined;
    private int _departed;
    private int _handlers;
    private List<IDisposable>? _idleDisposals;
    private RpcException? _failure;

    public AggregationSession(GradientStreamHeader header, long maxBufferFloats, GradientAggregationOptions options, TimeProvider clock, GradientExchangeMetrics? metrics = null)
    {
        _metrics = metrics;
        TrialId = header.TrialId;
        FencingToken = header.FencingToken;
        WorldSize = header.WorldSize;
        ChunkFloats = header.ChunkFloats;
        Bf16 = header.Bf16;
        DeclaredMaxFloats = header.MaxBufferFloats;
        MaxBufferFloats = maxBufferFloats;
        _options = options;
        _clock = clock;
        _ranks = new RankPort?[WorldSize];
        _sent = new int[WorldSize];
        _waitingSince = new long[WorldSize];
        _createdAt = clock.GetTimestamp();
        _ = WatchAsync(_ended.Token);
    }

    public string TrialId { get; }
    public long FencingToken { get; }
    public int WorldSize { get; }
    public int ChunkFloats { get; }

    /// <summary>Values travel as bfloat16 (2 bytes each) rather than fp32.</summary>
    public bool Bf16 { get; }

    /// <summary>Bytes per value on the wire.</summary>
    public int ValueBytes => Bf16 ? sizeof(ushort) : sizeof(float);
    public long DeclaredMaxFloats { get; }
    public long MaxBufferFloats { get; }

    /// <summary>Why the session failed, once it has.</summary>
    public RpcException? Failure => Volatile.Read(ref _failure);

    /// <summary>Cancelled when the session fails, so that blocked writes to every rank give up.</summary>
    public CancellationToken Ended => _ended.Token;

    /// <summary>True once no handler uses the session any more (the registry may forget it).</summary>
    public bool Finished
    {
        get
        {
            lock (_gate) return _handlers == 0 && (_failure is not null || _departed == WorldSize);
        }
    }

    /// <summary>Adds a rank's stream. Throws the status the new stream must end with when it cannot join.</summary>
    public RankPort Join(GradientStreamHeader header)
    {
        lock (_gate)
        {
            if (_failure is not null || _departed > 0) AggregationErrors.ThrowAttemptOver(TrialId);
            if (header.WorldSize != WorldSize || header.ChunkFloats != ChunkFloats || header.MaxBufferFloats != DeclaredMaxFloats || header.Bf16 != Bf16)
                AggregationErrors.ThrowInvalid(
                    $"rank {header.Rank} of trial {TrialId} says world size {header.WorldSize}, chunk {header.ChunkFloats} floats, max {header.MaxBufferFloats} floats, {(header.Bf16 ? "bf16" : "fp32")}; " +
                    $"the ranks already joined say {WorldSize}, {ChunkFloats}, {DeclaredMaxFloats}, {(Bf16 ? "bf16" : "fp32")}");
            if (_ranks[header.Rank] is not null) AggregationErrors.ThrowRankTaken(TrialId, header.Rank);
            var port = new RankPort(header.Rank);
            _ranks[header.Rank] = port;
            _handlers++;
            if (++_joined == WorldSize)
            {
                // Everyone is here: the echoed header tells each rank it may start its first step.
                foreach (var p in _ranks)
                {
                    var echo = header.Clone();
                    echo.Rank = p!.Rank;
                    p.Outbox.Writer.TryWrite(new Outgoing(echo, 0, 0, 0, null));
                }
            }
            return port;
        }
    }

    /// <summary>Takes one chunk from <paramref name="rank"/>'s gRPC stream (see <see cref="Receive(int, long, int, long, GradientPart)"/>).</summary>
    public void Receive(int rank, GradientChunk chunk)
    {
        if (chunk.Header is not null)
        {
            lock (_gate)
                throw FailLocked(AggregationErrors.Mismatch(TrialId, rank, "sent a second header on its stream"));
        }
        Receive(rank, chunk.Step, chunk.Index, chunk.StepFloats, new GradientPart(chunk.Data.Memory, null));
    }

    /// <summary>
    /// Checks a step's length before its bytes arrive (the gradient socket announces it once per
    /// step). Throws the session's failure when it is out of range or differs from another rank's.
    /// </summary>
    public void CheckStep(int rank, long step, long stepFloats)
    {
        lock (_gate)
        {
            if (_failure is not null) throw _failure;
            if (step != _step)
                throw FailLocked(AggregationErrors.Mismatch(TrialId, rank, $"started step {step} where step {_step} was due"));
            if (stepFloats <= 0 || stepFloats > MaxBufferFloats)
                throw FailLocked(AggregationErrors.Mismatch(TrialId, rank, $"sent a step of {stepFloats} floats (1 to {MaxBufferFloats} allowed)"));
            if (_stepFloats >= 0 && stepFloats != _stepFloats)
                throw FailLocked(AggregationErrors.Mismatch(TrialId, rank, $"reduces {stepFloats} floats at step {_step} where another rank reduces {_stepFloats}"));
        }
    }

    /// <summary>
    /// Takes one chunk from <paramref name="rank"/>; when it is the last part of its chunk index,
    /// reduces the chunk and queues the mean to every rank. Throws the session's failure if the
    /// chunk breaks the protocol or the session has failed. A pooled part goes back to the pool
    /// once summed.
    /// </summary>
    public void Receive(int rank, long step, int index, long stepFloats, GradientPart part)
    {
        GradientPart[]? parts = null;
        lock (_gate)
        {
            if (_failure is not null) throw _failure;
            if (_joined < WorldSize) throw FailLocked(AggregationErrors.Mismatch(TrialId, rank, "sent a chunk before every rank joined"));
            if (_departed > 0) throw FailLocked(AggregationErrors.Disconnected(TrialId, FirstDeparted(), clean: true));
            if (step != _step || index != _sent[rank])
                throw FailLocked(AggregationErrors.Mismatch(TrialId, rank,
                    $"sent chunk {index} of step {step} where chunk {_sent[rank]} of step {_step} was due"));
            if (_stepFloats < 0)
            {
                if (stepFloats <= 0 || stepFloats > MaxBufferFloats)
                    throw FailLocked(AggregationErrors.Mismatch(TrialId, rank, $"sent a step of {stepFloats} floats (1 to {MaxBufferFloats} allowed)"));
                StartStepLocked(stepFloats);
            }
            else if (stepFloats != _stepFloats)
            {
                throw FailLocked(AggregationErrors.Mismatch(TrialId, rank, $"reduces {stepFloats} floats at step {_step} where another rank reduces {_stepFloats}"));
            }
            if (index >= _stepChunks)
                throw FailLocked(AggregationErrors.Mismatch(TrialId, rank, $"sent chunk {index} of a {_stepChunks}-chunk step"));
            var expectedBytes = (int)Math.Min(ChunkFloats, _stepFloats - (long)index * ChunkFloats) * ValueBytes;
            if (part.Data.Length != expectedBytes)
                throw FailLocked(AggregationErrors.Mismatch(TrialId, rank, $"sent {part.Data.Length} bytes as chunk {index} where {expectedBytes} were due"));

            var slot = _slots[index];
            slot[rank] = part;
            _sent[rank]++;
            if (++_arrived[index] == WorldSize)
            {
                // Taken out of the slot, so that a failure clearing the slots cannot race the sum.
                parts = ArrayPool<GradientPart>.Shared.Rent(WorldSize);
                slot.CopyTo(parts, 0);
                Array.Clear(slot);
                _arrived[index] = 0;
                if (++_reducedChunks == _stepChunks) EndStepLocked();
            }
            if (_stepFloats >= 0) TrackWaitingLocked(rank);
        }
        if (parts is null) return;
        try
        {
            Reduce(parts.AsSpan(0, WorldSize), step, index, stepFloats);
        }
        finally
        {
            foreach (var p in parts.AsSpan(0, WorldSize))
                if (p.Pooled is { } pooled) ArrayPool<byte>.Shared.Return(pooled);
            ArrayPool<GradientPart>.Shared.Return(parts, clearArray: true);
        }
    }

    /// <summary>A rank closed its request stream. Between steps that is a clean exit; mid-step it fails the trial.</summary>
    public void Depart(RankPort port, bool clean)
    {
        lock (_gate)
        {
            if (_failure is not null || port.Departed) return;
            if (!clean || _stepFloats >= 0)
            {
                FailLocked(AggregationErrors.Disconnected(TrialId, port.Rank, clean));
                return;
            }
            port.Departed = true;
            _departed++;
            port.Outbox.Writer.TryComplete();
            if (_departed == WorldSize) _ended.Cancel();
        }
    }

    /// <summary>The rank's handler is done with the session.</summary>
    public void Release()
    {
        List<IDisposable>? disposals = null;
        lock (_gate)
        {
            if (--_handlers == 0)
            {
                disposals = _idleDisposals;
                _idleDisposals = null;
            }
        }
        if (disposals is not null)
            foreach (var d in disposals) d.Dispose();
    }

    /// <summary>
    /// Disposes <paramref name="resource"/> once no handler uses the session: memory another
    /// rank's reader may still be summing from (a shared-memory segment) must outlive every reader.
    /// </summary>
    public void DisposeWhenIdle(IDisposable resource)
    {
        lock (_gate)
        {
            if (_handlers > 0)
            {
                (_idleDisposals ??= []).Add(resource);
                return;
            }
        }
        resource.Dispose();
    }

    /// <summary>Fails every rank's stream with <paramref name="reason"/> (the first failure wins).</summary>
    public void Fail(RpcException reason)
    {
        lock (_gate) FailLocked(reason);
    }

    private RpcException FailLocked(RpcException reason)
    {
        if (_failure is not null) return _failure;
        _failure = reason;
        _metrics?.Failed(reason);
        foreach (var port in _ranks) port?.Outbox.Writer.TryComplete(reason);
        // Drops the parts held for unreduced chunks, and stops the watchdog and blocked writes.
        foreach (var slot in _slots) Array.Clear(slot);
        _ended.Cancel();
        return reason;
    }

    private void StartStepLocked(long floats)
    {
        _stepFloats = floats;
        _stepChunks = (int)((floats + ChunkFloats - 1) / ChunkFloats);
        _reducedChunks = 0;
        if (_slots.Length < _stepChunks)
        {
            var grown = new GradientPart[_stepChunks][];
            _slots.CopyTo(grown, 0);
            for (var i = _slots.Length; i < grown.Length; i++) grown[i] = new GradientPart[WorldSize];
            _slots = grown;
            Array.Resize(ref _arrived, _stepChunks);
        }
    }

    private void EndStepLocked()
    {
        _step++;
        _stepFloats = -1;
        Array.Clear(_sent);
        Array.Clear(_waitingSince);
    }

    /// <summary>
    /// After <paramref name="rank"/> sent a chunk: every rank now behind the furthest one starts
    /// (or keeps) a stall clock; the sender restarts its own, or stops it when it caught up.
    /// </summary>
    private void TrackWaitingLocked(int rank)
    {
        var now = _clock.GetTimestamp();
        var furthest = 0;
        foreach (var n in _sent) furthest = Math.Max(furthest, n);
        for (var r = 0; r < WorldSize; r++)
        {
            if (_sent[r] >= furthest) _waitingSince[r] = 0;
            else if (r == rank || _waitingSince[r] == 0) _waitingSince[r] = now;
        }
    }

    private int FirstDeparted()
    {
        foreach (var p in _ranks)
            if (p is { Departed: true }) return p.Rank;
        return 0;
    }

    /// <summary>
    /// Sums the parts in rank order into a pooled buffer, divides once by W, and queues the bytes to
    /// every rank. The buffer goes back to the pool after the last rank's write.
    /// </summary>
    private void Reduce(ReadOnlySpan<GradientPart> parts, long step, int index, long stepFloats)
    {
        var bytes = parts[0].Data.Length;
        var array = ArrayPool<byte>.Shared.Rent(GradientSocketFrames.FrameHeaderBytes + bytes);
        var destination = array.AsSpan(GradientSocketFrames.FrameHeaderBytes, bytes);
        if (Bf16) MeanKernel.MeanBf16(parts, MemoryMarshal.Cast<byte, ushort>(destination));
        else MeanKernel.Mean(parts, MemoryMarshal.Cast<byte, float>(destination));
        // The socket frame's header, written once for every rank that reads the gradient socket.
        GradientSocketFrames.WriteFrame(array, GradientSocketFrames.Mean, (uint)index, step);
        var reduced = new ReducedChunk(array, bytes, WorldSize);
        foreach (var port in _ranks)
        {
            if (!port!.Outbox.Writer.TryWrite(new Outgoing(null, step, index, stepFloats, reduced))) reduced.Release();
        }
    }

    /// <summary>
    /// Fails the session when the ranks do not all join in time, or when a rank the others wait
    /// for sends nothing for the stall timeout. Checks four times per timeout, so a stall is
    /// reported between 1 and 1.25 timeouts after it began.
    /// </summary>
    private async Task WatchAsync(CancellationToken ct)
    {
        var interval = TimeSpan.FromTicks(Math.Max(TimeSpan.FromMilliseconds(10).Ticks,
            Math.Min(_options.StallTimeout.Ticks, _options.JoinTimeout.Ticks) / 4));
        try
        {
            while (!ct.IsCancellationRequested)
            {
                await Task.Delay(interval, _clock, ct).ConfigureAwait(false);
                lock (_gate)
                {
                    if (_failure is not null) return;
                    if (_joined < WorldSize)
                    {
                        if (_clock.GetElapsedTime(_createdAt) > _options.JoinTimeout)
                            FailLocked(AggregationErrors.NotJoined(TrialId, [.. Enumerable.Range(0, WorldSize).Where(r => _ranks[r] is null)], _options.JoinTimeout));
                        continue;
                    }
                    for (var r = 0; r < WorldSize; r++)
                    {
                        if (_waitingSince[r] != 0 && _clock.GetElapsedTime(_waitingSince[r]) > _options.StallTimeout)
                        {
                            FailLocked(AggregationErrors.Stalled(TrialId, r, _options.StallTimeout));
                            return;
                        }
                    }
                }
            }
        }
        catch (OperationCanceledException)
        {
            // The session ended.
        }
    }
}

/// <summary>One rank's stream in a session: its outbox, drained by the one writer loop of its call.</summary>
internal sealed class RankPort(int rank)
{
    public int Rank { get; } = rank;

    /// <summary>
    /// Unbounded on purpose: at most one step is in flight, so it never holds more than one
    /// buffer's worth of chunks, and a reducer must never block on a slow rank's writer.
    /// </summary>
    public Channel<Outgoing> Outbox { get; } = Channel.CreateUnbounded<Outgoing>(new UnboundedChannelOptions { SingleReader = true });

    /// <summary>Closed its stream cleanly between steps.</summary>
    public bool Departed { get; set; }
}

/// <summary>
/// What one rank is sent next: the echoed header once everyone joined (<paramref name="Joined"/>),
/// or the mean of chunk <paramref name="Index"/> of step <paramref name="Step"/>, in a shared
/// buffer to release once it is written.
/// </summary>
internal readonly record struct Outgoing(GradientStreamHeader? Joined, long Step, int Index, long StepFloats, ReducedChunk? Buffer)
{
    /// <summary>A control item of the gradient socket's shared-memory mode: switch to this segment and tell the rank.</summary>
    public Protocol.SharedMemorySegment? Segment { get; init; }

    /// <summary>The message for the gRPC stream (wraps the shared bytes without copying).</summary>
    public GradientChunk ToChunk() => Joined is { } header
        ? new GradientChunk { Header = header }
        : new GradientChunk { Step = Step, Index = Index, StepFloats = StepFloats, Data = Buffer!.Data };
}

/// <summary>One rank's chunk as received: its bytes, and the pooled array holding them (null when not pooled).</summary>
internal readonly record struct GradientPart(ReadOnlyMemory<byte> Data, byte[]? Pooled);

/// <summary>
/// A reduced chunk in a pooled array, after room for the socket frame header, shared by the W
/// writes of it. Released by count rather than with <c>using</c>: the last of W concurrent
/// writers returns it.
/// </summary>
internal sealed class ReducedChunk(byte[] array, int length, int readers)
{
    private int _readers = readers;

    /// <summary>Wraps the pooled bytes without copying; valid until the last <see cref="Release"/>.</summary>
    public ByteString Data => UnsafeByteOperations.UnsafeWrap(array.AsMemory(GradientSocketFrames.FrameHeaderBytes, length));

    /// <summary>The whole socket frame: header and means.</summary>
    public ReadOnlyMemory<byte> Frame => array.AsMemory(0, GradientSocketFrames.FrameHeaderBytes + length);

    public void Release()
    {
        if (Interlocked.Decrement(ref _readers) == 0) ArrayPool<byte>.Shared.Return(array);
    }
}

/// <summary>The mean of W fp32 parts in a fixed order, with SIMD (<see cref="TensorPrimitives"/>).</summary>
internal static class MeanKernel
{
    /// <summary>
    /// destination = (parts[0] + parts[1] + … + parts[W−1]) / W, summed left to right. A power-of-two
    /// W folds the division into the last addition as a multiplication by 1/W: that scaling is exact,
    /// so the bits equal those of add-then-divide, and it saves one pass over the chunk.
    /// </summary>
    public static void Mean(ReadOnlySpan<GradientPart> parts, Span<float> destination)
    {
        var w = parts.Length;
        if (w == 1)
        {
            Floats(parts[0]).CopyTo(destination);
            return;
        }
        var powerOfTwo = (w & (w - 1)) == 0;
        ReadOnlySpan<float> accumulated = Floats(parts[0]);
        for (var r = 1; r < w; r++)
        {
            if (r == w - 1 && powerOfTwo)
            {
                TensorPrimitives.AddMultiply(accumulated, Floats(parts[r]), 1f / w, destination);
                return;
            }
            TensorPrimitives.Add(accumulated, Floats(parts[r]), destination);
            accumulated = destination;
        }
        TensorPrimitives.Divide(destination, w, destination);
    }

    /// <summary>
    /// The bf16 wire: widens each part to fp32 (exact), takes the same mean as <see cref="Mean"/>,
    /// and rounds it to bf16 (nearest, ties to even).
    /// </summary>
    public static void MeanBf16(ReadOnlySpan<GradientPart> parts, Span<ushort> destination)
    {
        var count = destination.Length;
        var w = parts.Length;
        var scratch = ArrayPool<float>.Shared.Rent(2 * count);
        try
        {
            var accumulated = scratch.AsSpan(0, count);
            var next = scratch.AsSpan(count, count);
            BFloat16Codec.Widen(Halves(parts[0]), accumulated);
            var powerOfTwo = (w & (w - 1)) == 0;
            for (var r = 1; r < w; r++)
            {
                BFloat16Codec.Widen(Halves(parts[r]), next);
                if (r == w - 1 && powerOfTwo)
                {
                    TensorPrimitives.AddMultiply(accumulated, next, 1f / w, accumulated);
                    break;
                }
                TensorPrimitives.Add(accumulated, next, accumulated);
                if (r == w - 1) TensorPrimitives.Divide(accumulated, w, accumulated);
            }
            BFloat16Codec.Narrow(accumulated, destination);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(scratch);
        }
    }

    private static ReadOnlySpan<ushort> Halves(GradientPart part) => MemoryMarshal.Cast<byte, ushort>(part.Data.Span);

    private static ReadOnlySpan<float> Floats(GradientPart part) => MemoryMarshal.Cast<byte, float>(part.Data.Span);
}

using System.Buffers;
using System.Threading.Channels;
using Orchestrator.Protocol;

namespace Orchestrator.Coordinator.Aggregation;

/// <summary>
/// The gradient exchange of one trial attempt (trial id + fencing token): W rank streams, the
/// chunks of the step in flight, and a watchdog. Chunk k of a step is reduced on the thread that
/// delivers its last part, then queued to every rank's outbox; each outbox has one writer loop
/// (the rank's call handler). It knows no transport: it fails with a typed
/// <see cref="AggregationFailure"/> that each transport (the gRPC stream, the gradient socket)
/// turns into its own status.
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
internal sealed partial class AggregationSession
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
    private AggregationFailure? _failure;

    public AggregationSession(GradientStreamSpec header, long maxBufferFloats, GradientAggregationOptions options, TimeProvider clock, GradientExchangeMetrics? metrics = null)
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
    public AggregationFailure? Failure => Volatile.Read(ref _failure);

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

    /// <summary>Adds a rank's stream. Throws an <see cref="AggregationException"/> with the failure the new stream must end with when it cannot join.</summary>
    public RankPort Join(GradientStreamSpec header)
    {
        lock (_gate)
        {
            if (_failure is not null || _departed > 0) AggregationFailure.ThrowAttemptOver(TrialId);
            if (header.WorldSize != WorldSize || header.ChunkFloats != ChunkFloats || header.MaxBufferFloats != DeclaredMaxFloats || header.Bf16 != Bf16)
                AggregationFailure.ThrowInvalid(
                    $"rank {header.Rank} of trial {TrialId} says world size {header.WorldSize}, chunk {header.ChunkFloats} floats, max {header.MaxBufferFloats} floats, {(header.Bf16 ? "bf16" : "fp32")}; " +
                    $"the ranks already joined say {WorldSize}, {ChunkFloats}, {DeclaredMaxFloats}, {(Bf16 ? "bf16" : "fp32")}");
            if (_ranks[header.Rank] is not null) AggregationFailure.ThrowRankTaken(TrialId, header.Rank);
            var port = new RankPort(header.Rank);
            _ranks[header.Rank] = port;
            _handlers++;
            if (++_joined == WorldSize)
            {
                // Everyone is here: the echoed header tells each rank it may start its first step.
                foreach (var p in _ranks)
                    p!.Outbox.Writer.TryWrite(new Outgoing(header with { Rank = p.Rank }, 0, 0, 0, null));
            }
            return port;
        }
    }

    /// <summary>
    /// Checks a step's length before its bytes arrive (the gradient socket announces it once per
    /// step). Throws the session's failure when it is out of range or differs from another rank's.
    /// </summary>
    public void CheckStep(int rank, long step, long stepFloats)
    {
        lock (_gate)
        {
            if (_failure is not null) throw new AggregationException(_failure);
            if (step != _step)
                throw FailLocked(AggregationFailure.Mismatch(TrialId, rank, $"started step {step} where step {_step} was due"));
            if (stepFloats <= 0 || stepFloats > MaxBufferFloats)
                throw FailLocked(AggregationFailure.Mismatch(TrialId, rank, $"sent a step of {stepFloats} floats (1 to {MaxBufferFloats} allowed)"));
            if (_stepFloats >= 0 && stepFloats != _stepFloats)
                throw FailLocked(AggregationFailure.Mismatch(TrialId, rank, $"reduces {stepFloats} floats at step {_step} where another rank reduces {_stepFloats}"));
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
            if (_failure is not null) throw new AggregationException(_failure);
            if (_joined < WorldSize) throw FailLocked(AggregationFailure.Mismatch(TrialId, rank, "sent a chunk before every rank joined"));
            if (_departed > 0) throw FailLocked(AggregationFailure.Disconnected(TrialId, FirstDeparted(), clean: true));
            if (step != _step || index != _sent[rank])
                throw FailLocked(AggregationFailure.Mismatch(TrialId, rank,
                    $"sent chunk {index} of step {step} where chunk {_sent[rank]} of step {_step} was due"));
            if (_stepFloats < 0)
            {
                if (stepFloats <= 0 || stepFloats > MaxBufferFloats)
                    throw FailLocked(AggregationFailure.Mismatch(TrialId, rank, $"sent a step of {stepFloats} floats (1 to {MaxBufferFloats} allowed)"));
                StartStepLocked(stepFloats);
            }
            else if (stepFloats != _stepFloats)
            {
                throw FailLocked(AggregationFailure.Mismatch(TrialId, rank, $"reduces {stepFloats} floats at step {_step} where another rank reduces {_stepFloats}"));
            }
            if (index >= _stepChunks)
                throw FailLocked(AggregationFailure.Mismatch(TrialId, rank, $"sent chunk {index} of a {_stepChunks}-chunk step"));
            var expectedBytes = (int)Math.Min(ChunkFloats, _stepFloats - (long)index * ChunkFloats) * ValueBytes;
            if (part.Data.Length != expectedBytes)
                throw FailLocked(AggregationFailure.Mismatch(TrialId, rank, $"sent {part.Data.Length} bytes as chunk {index} where {expectedBytes} were due"));

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
                FailLocked(AggregationFailure.Disconnected(TrialId, port.Rank, clean));
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
    public void Fail(AggregationFailure reason)
    {
        lock (_gate) FailLocked(reason);
    }

    /// <summary>Fails the session (unless it failed already) and returns what the caller throws: the session's failure.</summary>
    private AggregationException FailLocked(AggregationFailure reason)
    {
        if (_failure is not null) return new AggregationException(_failure);
        _failure = reason;
        _metrics?.Failed(reason);
        var ended = new AggregationException(reason);
        foreach (var port in _ranks) port?.Outbox.Writer.TryComplete(ended);
        // Drops the parts held for unreduced chunks, and stops the watchdog and blocked writes.
        foreach (var slot in _slots) Array.Clear(slot);
        _ended.Cancel();
        return ended;
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

    private int FirstDeparted()
    {
        foreach (var p in _ranks)
            if (p is { Departed: true }) return p.Rank;
        return 0;
    }
}

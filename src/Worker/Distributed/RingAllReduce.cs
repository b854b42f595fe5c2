using System.Buffers;
using System.Net.Sockets;
using System.Threading.Tasks.Sources;

namespace Orchestrator.Worker.Distributed;

/// <summary>
/// Bandwidth-optimal ring all-reduce over direct sockets: reduce-scatter, then all-gather, each
/// rank sending 2(W−1)/W of the buffer to rank+1 while receiving as much from rank−1.
/// </summary>
/// <remarks>
/// <para>The buffer is cut into W segments; segment j is summed along the ring starting at rank j
/// and finished (divided, for the mean) by rank j−1, which then circulates it. Each element is
/// therefore reduced exactly once in a fixed order and copied bit for bit to the other ranks.</para>
/// <para>Sending and receiving run at once on two dedicated threads with blocking socket calls on
/// spans of the caller's buffer: no copies for fp32 sends and all-gather receives, no async state
/// machines per chunk, and the kernel's socket timeouts bound every call. A segment moves in
/// chunks, so the sender forwards chunk c as soon as the receiver has folded it in.</para>
/// </remarks>
public sealed partial class RingAllReduce : IAllReduce
{
    private readonly RingAllReduceOptions _options;
    private readonly Socket? _next;     // we send to rank+1
    private readonly Socket? _previous; // we receive from rank−1
    private readonly int _chunkElements;
    private readonly IMemoryOwner<byte>? _receiveStaging;
    private readonly IMemoryOwner<byte>? _sendStaging;
    private readonly IMemoryOwner<byte>? _widenScratch;
    private readonly SemaphoreSlim _startSend = new(0);
    private readonly SemaphoreSlim _startReceive = new(0);
    private readonly SemaphoreSlim _forwardable = new(0); // chunks the sender may forward
    private readonly CancellationTokenSource _abort = new();
    private readonly Thread? _sendThread;
    private readonly Thread? _receiveThread;
    private readonly OperationSource _completion = new();
    private readonly byte[] _sendHeader = new byte[WireProtocol.CallHeaderBytes];
    private readonly byte[] _receiveHeader = new byte[WireProtocol.CallHeaderBytes];

    private Memory<float> _buffer;
    private uint _sequence;
    private int _busy;
    private int _running;
    private Exception? _failure;
    private CancellationTokenRegistration _cancellation;
    private volatile bool _disposed;

    private RingAllReduce(RingAllReduceOptions options, Socket? next, Socket? previous)
    {
        _options = options;
        Rank = options.Rank;
        WorldSize = options.Endpoints.Count;
        _next = next;
        _previous = previous;
        _chunkElements = Math.Max(16, options.ChunkBytes / sizeof(float));
        if (WorldSize == 1) return;

        // Pooled for the life of the ring: no allocation per step.
        _receiveStaging = Lease(_chunkElements * sizeof(float));
        if (options.Wire == WireFormat.Bf16)
        {
            _sendStaging = Lease(_chunkElements * sizeof(ushort));
            _widenScratch = Lease(_chunkElements * sizeof(float));
        }
        _sendThread = new Thread(SendWorker) { IsBackground = true, Name = $"allreduce-send-r{Rank}" };
        _receiveThread = new Thread(ReceiveWorker) { IsBackground = true, Name = $"allreduce-recv-r{Rank}" };
        _sendThread.Start();
        _receiveThread.Start();
    }

    /// <inheritdoc />
    public int Rank { get; }

    /// <inheritdoc />
    public int WorldSize { get; }

    /// <summary>The options this rank was created with.</summary>
    public RingAllReduceOptions Options => _options;

    /// <inheritdoc />
    public ValueTask AllReduceAsync(Memory<float> buffer, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (Interlocked.CompareExchange(ref _busy, 1, 0) != 0) RingErrors.ThrowConcurrentCall();
        if (_failure is not null)
        {
            Volatile.Write(ref _busy, 0);
            return ValueTask.FromException(RingErrors.Broken(Rank, _failure));
        }
        if (cancellationToken.IsCancellationRequested)
        {
            Volatile.Write(ref _busy, 0);
            return ValueTask.FromCanceled(cancellationToken);
        }
        if (WorldSize == 1)
        {
            // The mean and the sum of one rank are its own values; nothing to send.
            Volatile.Write(ref _busy, 0);
            return ValueTask.CompletedTask;
        }

        _buffer = buffer;
        _sequence++;
        _completion.Reset();
        _running = 2;
        if (cancellationToken.CanBeCanceled)
            _cancellation = cancellationToken.UnsafeRegister(static (state, token) =>
                ((RingAllReduce)state!).Abort(new OperationCanceledException(token)), this);
        _startReceive.Release();
        _startSend.Release();
        return new ValueTask(_completion, _completion.Version);
    }

    /// <summary>Closes the ring. Peers still in a collective fail with <see cref="CollectiveFailure.PeerClosed"/>.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_disposed) return;
        _disposed = true;
        Abort(new ObjectDisposedException(nameof(RingAllReduce)));
        _startSend.Release();
        _startReceive.Release();
        // The threads leave at once: the sockets are shut and the abort token is cancelled.
        await Task.Run(() =>
        {
            _sendThread?.Join();
            _receiveThread?.Join();
        }).ConfigureAwait(false);
        _next?.Dispose();
        _previous?.Dispose();
        _receiveStaging?.Dispose();
        _sendStaging?.Dispose();
        _widenScratch?.Dispose();
        _startSend.Dispose();
        _startReceive.Dispose();
        _forwardable.Dispose();
        _abort.Dispose();
    }

    /// <summary>
    /// Breaks the ring: records the first failure, then shuts both sockets so that blocked calls
    /// here return and both neighbours see the connection close, fail in turn and close theirs,
    /// which carries the failure around the ring in milliseconds instead of one timeout per hop.
    /// </summary>
    private void Abort(Exception reason)
    {
        Interlocked.CompareExchange(ref _failure, reason, null);
        Shut(_next);
        Shut(_previous);
        try { _abort.Cancel(); } catch (ObjectDisposedException) { }

        static void Shut(Socket? socket)
        {
            try { socket?.Shutdown(SocketShutdown.Both); } catch (SocketException) { } catch (ObjectDisposedException) { }
        }
    }

    private void SendWorker()
    {
        while (true)
        {
            _startSend.Wait();
            if (_disposed) return;
            try
            {
                if (_options.Operation == ReduceOperation.Mean) SendAll<MeanOp>(_buffer.Span);
                else SendAll<SumOp>(_buffer.Span);
            }
            catch (Exception e)
            {
                Abort(RingErrors.Describe(e, Rank, NextRank, _options, sending: true));
            }
            Finished();
        }
    }

    private void ReceiveWorker()
    {
        while (true)
        {
            _startReceive.Wait();
            if (_disposed) return;
            try
            {
                if (_options.Operation == ReduceOperation.Mean) ReceiveAll<MeanOp>(_buffer.Span);
                else ReceiveAll<SumOp>(_buffer.Span);
            }
            catch (Exception e)
            {
                Abort(RingErrors.Describe(e, Rank, PreviousRank, _options, sending: false));
            }
            Finished();
        }
    }

    private void Finished()
    {
        if (Interlocked.Decrement(ref _running) != 0) return;
        _cancellation.Unregister();
        _cancellation = default;
        _buffer = default;
        var failure = Volatile.Read(ref _failure);
        Volatile.Write(ref _busy, 0);
        if (failure is null) _completion.SetResult();
        else _completion.SetException(failure);
    }

    private int NextRank => (Rank + 1) % WorldSize;

    private int PreviousRank => (Rank + WorldSize - 1) % WorldSize;

    private static IMemoryOwner<byte> Lease(int bytes) => new PooledLease(bytes);

    /// <summary>An <see cref="ArrayPool{T}"/> array held as an <see cref="IMemoryOwner{T}"/>.</summary>
    private sealed class PooledLease(int length) : IMemoryOwner<byte>
    {
        private byte[]? _array = ArrayPool<byte>.Shared.Rent(length);

        public Memory<byte> Memory => _array.AsMemory(0, length);

        public void Dispose()
        {
            var array = Interlocked.Exchange(ref _array, null);
            if (array is not null) ArrayPool<byte>.Shared.Return(array);
        }
    }

    /// <summary>One reusable completion: a collective costs no allocation for its task.</summary>
    private sealed class OperationSource : IValueTaskSource
    {
        private ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = true };

        public short Version => _core.Version;

        public void Reset() => _core.Reset();

        public void SetResult() => _core.SetResult(true);

        public void SetException(Exception e) => _core.SetException(e);

        public void GetResult(short token) => _core.GetResult(token);

        public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            _core.OnCompleted(continuation, state, token, flags);
    }
}

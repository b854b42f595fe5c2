using System.Runtime.CompilerServices;
using Grpc.Core;

namespace Orchestrator.Worker.Distributed;

/// <summary>
/// What the two clients of the coordinator's gradient exchange share, whatever carries the bytes
/// (<see cref="CoordinatorAllReduce"/>: the gRPC stream; <see cref="CoordinatorSocketAllReduce"/>:
/// the gradient socket or shared memory): one collective at a time, the step counter, the idle
/// timeout, and turning a failed step into the <see cref="CollectiveException"/> the caller acts on.
/// </summary>
public abstract class CoordinatorCollective : IAllReduce
{
    private long _step;
    private int _busy;
    private Exception? _failure;

    private protected CoordinatorCollective(CoordinatorAllReduceOptions options)
    {
        Options = options;
        Rank = options.Rank;
        WorldSize = options.WorldSize;
    }

    /// <inheritdoc />
    public int Rank { get; }

    /// <inheritdoc />
    public int WorldSize { get; }

    private protected CoordinatorAllReduceOptions Options { get; }

    /// <summary>Set by <see cref="DisposeAsync"/> implementations; later calls throw.</summary>
    private protected bool Disposed { get; set; }

    /// <summary>True when the exchange is neither broken nor in a collective: it may leave cleanly.</summary>
    private protected bool Idle => _failure is null && Volatile.Read(ref _busy) == 0;

    /// <summary>True while a collective runs.</summary>
    private protected bool Busy => Volatile.Read(ref _busy) != 0;

    /// <inheritdoc />
    public ValueTask AllReduceAsync(Memory<float> buffer, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(Disposed, this);
        if (Interlocked.CompareExchange(ref _busy, 1, 0) != 0) ThrowConcurrentCall();
        if (_failure is { } failure)
        {
            Volatile.Write(ref _busy, 0);
            return ValueTask.FromException(Broken(failure));
        }
        if (cancellationToken.IsCancellationRequested)
        {
            Volatile.Write(ref _busy, 0);
            return ValueTask.FromCanceled(cancellationToken);
        }
        if (WorldSize == 1 || buffer.IsEmpty)
        {
            // One rank's mean is its own values; an empty buffer has nothing to average.
            Volatile.Write(ref _busy, 0);
            return ValueTask.CompletedTask;
        }
        return RunAsync(buffer, cancellationToken);
    }

    /// <inheritdoc />
    public abstract ValueTask DisposeAsync();

    /// <summary>
    /// Runs one step: sends this rank's values (a task stored in <paramref name="send"/>, so that a
    /// failure can still observe it) and receives the means into <paramref name="buffer"/>.
    /// <paramref name="idle"/> is restarted at every message from the coordinator: it bounds
    /// silence, not the whole step.
    /// </summary>
    private protected abstract Task ExchangeAsync(Memory<float> buffer, long step, CancellationTokenSource idle, StrongBox<Task> send);

    /// <summary>A transport's own errors, as the failure the caller should see (by default, as they are).</summary>
    private protected virtual Exception Translate(Exception error) => error;

    /// <summary>Drops the connection after a failed step: it no longer agrees with the coordinator about where it stands.</summary>
    private protected abstract void Abandon();

    private async ValueTask RunAsync(Memory<float> buffer, CancellationToken ct)
    {
        var step = _step++;
        using var idle = CancellationTokenSource.CreateLinkedTokenSource(ct);
        idle.CancelAfter(Options.Timeout);
        var send = new StrongBox<Task>(Task.CompletedTask);
        try
        {
            await ExchangeAsync(buffer, step, idle, send).ConfigureAwait(false);
            await send.Value!.ConfigureAwait(false);
        }
        catch (Exception e)
        {
            // Stop the other half (a send blocked on flow control, a read waiting for a mean).
            await idle.CancelAsync().ConfigureAwait(false);
            Exception? sendError = null;
            try { await send.Value!.ConfigureAwait(false); } catch (Exception s) { sendError = s; }
            var failure = ct.IsCancellationRequested
                ? new OperationCanceledException(ct)
                : CoordinatorAllReduce.Describe(Translate(Informative(e, sendError)), Options,
                    IdleTimedOut(e, sendError) ? Options.Timeout : null, joining: false);
            Volatile.Write(ref _failure, failure);
            Abandon();
            throw failure;
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    /// <summary>The error that says most: the coordinator's verdict over our own cancellation of the other half.</summary>
    private static Exception Informative(Exception receive, Exception? send) =>
        Secondary(receive) && send is not null && !Secondary(send) ? send : receive;

    private static bool IdleTimedOut(Exception receive, Exception? send) =>
        Secondary(receive) && (send is null || Secondary(send));

    private static bool Secondary(Exception e) => e is OperationCanceledException or RpcException { StatusCode: StatusCode.Cancelled };

    private CollectiveException Broken(Exception first) =>
        new(CollectiveFailure.Broken, Rank, (first as CollectiveException)?.PeerRank,
            $"The gradient exchange of rank {Rank} is broken by an earlier failure; connect a new one. First failure: {first.Message}", first);

    [System.Diagnostics.CodeAnalysis.DoesNotReturn, MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowConcurrentCall() =>
        throw new InvalidOperationException("AllReduceAsync is already running on this instance; collectives must be called one at a time, in the same order on every rank.");
}

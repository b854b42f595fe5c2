using System.Diagnostics.CodeAnalysis;
using System.Net.Sockets;
using System.Runtime.CompilerServices;

namespace Orchestrator.Worker.Distributed;

/// <summary>Every failure message of the ring, in one place; throw paths stay out of line.</summary>
internal static class RingErrors
{
    /// <summary>
    /// Turns what a socket call threw into the failure a user can act on. A socket we shut
    /// ourselves (after a failure elsewhere) gives the same errors as one the peer closed; the
    /// first recorded failure wins, so those secondary ones are never reported.
    /// </summary>
    public static Exception Describe(Exception error, int rank, int peer, RingAllReduceOptions options, bool sending)
    {
        if (error is CollectiveException or OperationCanceledException) return error;
        var endpoint = options.Endpoints[peer];
        var link = sending ? $"sending to rank {peer} ({endpoint})" : $"receiving from rank {peer} ({endpoint})";
        var where = $"All-reduce failed on rank {rank} of {options.Endpoints.Count}";
        return error switch
        {
            EndOfStreamException => new CollectiveException(CollectiveFailure.PeerClosed, rank, peer,
                $"{where}: rank {peer} ({endpoint}) closed the connection mid-collective (it stopped, died, or failed itself).", error),
            SocketException { SocketErrorCode: SocketError.TimedOut or SocketError.WouldBlock } => new CollectiveException(CollectiveFailure.Timeout, rank, peer,
                sending
                    ? $"{where}: rank {peer} ({endpoint}) accepted no data for {options.Timeout.TotalSeconds:0.###} s (stalled, or not in this collective)."
                    : $"{where}: rank {peer} ({endpoint}) sent nothing for {options.Timeout.TotalSeconds:0.###} s (stalled, or not in this collective).", error),
            SocketException socket => new CollectiveException(CollectiveFailure.PeerClosed, rank, peer,
                $"{where}: {link}: {socket.SocketErrorCode} (the peer stopped, died, or failed itself).", error),
            ObjectDisposedException => new CollectiveException(CollectiveFailure.PeerClosed, rank, peer, $"{where}: {link}: the ring was closed.", error),
            _ => new CollectiveException(CollectiveFailure.PeerClosed, rank, peer, $"{where}: {link}: {error.Message}", error),
        };
    }

    public static CollectiveException Broken(int rank, Exception first) =>
        new(CollectiveFailure.Broken, rank, (first as CollectiveException)?.PeerRank,
            $"The all-reduce ring of rank {rank} is broken by an earlier failure; connect a new one. First failure: {first.Message}", first);

    [DoesNotReturn, MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowConcurrentCall() =>
        throw new InvalidOperationException("AllReduceAsync is already running on this instance; collectives must be called one at a time, in the same order on every rank.");

    [DoesNotReturn, MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowMismatch(int rank, int previous, uint sequence, long count, uint theirSequence, long theirCount) =>
        throw new CollectiveException(CollectiveFailure.Mismatch, rank, previous,
            $"All-reduce failed on rank {rank}: rank {previous} is at collective #{theirSequence} of {theirCount} floats, this rank at #{sequence} of {count} floats. Every rank must reduce buffers of the same length in the same order.");

    [DoesNotReturn, MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowConnectFailed(int rank, int peer, RingEndpoint endpoint, string what, Exception? inner = null) =>
        throw new CollectiveException(CollectiveFailure.ConnectFailed, rank, peer,
            $"Forming the all-reduce ring failed on rank {rank}: rank {peer} ({endpoint}) {what}", inner);
}

using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Runtime.CompilerServices;
using Grpc.Core;
using Orchestrator.Protocol.V1;

namespace Orchestrator.Coordinator.Aggregation;

/// <summary>
/// Every status the gradient exchange ends a stream with, in one place. A failed step carries two
/// trailers besides its message, so a client can tell which rank broke the trial and how without
/// parsing text (<see cref="GradientExchange.FailedRankTrailer"/>, <see cref="GradientExchange.FailureTrailer"/>).
/// </summary>
internal static class AggregationErrors
{
    internal static RpcException Stalled(string trialId, int rank, TimeSpan timeout) =>
        Aborted(rank, "timeout", $"Gradient aggregation of trial {trialId} failed: rank {rank} sent nothing for {timeout.TotalSeconds:0.###} s while the other ranks waited for it (stalled, or not in this collective).");

    internal static RpcException NotJoined(string trialId, IReadOnlyList<int> missing, TimeSpan timeout) =>
        Aborted(missing[0], "timeout", $"Gradient aggregation of trial {trialId} failed: rank(s) {string.Join(", ", missing)} did not open their stream within {timeout.TotalSeconds:0.###} s.");

    internal static RpcException Disconnected(string trialId, int rank, bool clean) =>
        Aborted(rank, "closed", clean
            ? $"Gradient aggregation of trial {trialId} failed: rank {rank} closed its stream while the other ranks still reduce (it stopped, or failed itself)."
            : $"Gradient aggregation of trial {trialId} failed: rank {rank} disconnected mid-step (it stopped, died, or failed itself).");

    internal static RpcException Mismatch(string trialId, int rank, string what) =>
        Aborted(rank, "mismatch", $"Gradient aggregation of trial {trialId} failed: rank {rank} {what}. Every rank must reduce buffers of the same length in the same order.");

    internal static RpcException Superseded(string trialId, long token) =>
        new(new Status(StatusCode.Aborted, $"Gradient aggregation of trial {trialId} ended: the trial was assigned again (fencing token {token.ToString(CultureInfo.InvariantCulture)})."));

    [DoesNotReturn, MethodImpl(MethodImplOptions.NoInlining)]
    internal static void ThrowStale(string trialId, long token) =>
        throw new RpcException(new Status(StatusCode.FailedPrecondition,
            $"fencing token {token.ToString(CultureInfo.InvariantCulture)} is not the current assignment of trial {trialId}; this worker must stop the trial"));

    [DoesNotReturn, MethodImpl(MethodImplOptions.NoInlining)]
    internal static void ThrowInvalid(string message) =>
        throw new RpcException(new Status(StatusCode.InvalidArgument, message));

    [DoesNotReturn, MethodImpl(MethodImplOptions.NoInlining)]
    internal static void ThrowRankTaken(string trialId, int rank) =>
        throw new RpcException(new Status(StatusCode.AlreadyExists, $"rank {rank} of trial {trialId} already has a gradient stream"));

    [DoesNotReturn, MethodImpl(MethodImplOptions.NoInlining)]
    internal static void ThrowAttemptOver(string trialId) =>
        throw new RpcException(new Status(StatusCode.FailedPrecondition,
            $"the gradient aggregation of this attempt of trial {trialId} has already failed or ended; the trial must be assigned again"));

    private static RpcException Aborted(int rank, string kind, string message) =>
        new(new Status(StatusCode.Aborted, message), new Metadata
        {
            { GradientExchange.FailedRankTrailer, rank.ToString(CultureInfo.InvariantCulture) },
            { GradientExchange.FailureTrailer, kind },
        });
}

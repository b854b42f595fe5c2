using System.Globalization;
using Google.Protobuf;
using Grpc.Core;
using Orchestrator.Coordinator.Aggregation;
using Orchestrator.Protocol;
using Orchestrator.Protocol.V1;

namespace Orchestrator.Coordinator.Grpc.Gradients;

/// <summary>
/// The gradient exchange's domain ↔ gradients.proto: stream headers, the chunks a rank is sent,
/// and each <see cref="AggregationFailure"/> as the status the gRPC stream ends with, or the
/// failure frame the gradient socket ends with (the same code, message and trailers).
/// </summary>
internal static class GradientMapping
{
    public static GradientStreamSpec FromProto(GradientStreamHeader h) =>
        new(h.TrialId, h.FencingToken, h.Rank, h.WorldSize, h.MaxBufferFloats, h.ChunkFloats, h.Bf16);

    public static GradientStreamHeader ToProto(GradientStreamSpec s) => new()
    {
        TrialId = s.TrialId,
        FencingToken = s.FencingToken,
        Rank = s.Rank,
        WorldSize = s.WorldSize,
        MaxBufferFloats = s.MaxBufferFloats,
        ChunkFloats = s.ChunkFloats,
        Bf16 = s.Bf16,
    };

    /// <summary>The message for the gRPC stream: the echoed header, or a mean (wrapping the shared bytes without copying).</summary>
    public static GradientChunk ToChunk(Outgoing item) => item.Joined is { } header
        ? new GradientChunk { Header = ToProto(header) }
        : new GradientChunk { Step = item.Step, Index = item.Index, StepFloats = item.StepFloats, Data = UnsafeByteOperations.UnsafeWrap(item.Buffer!.Means) };

    /// <summary>The gRPC status of a failure: ABORTED naming the rank for a failed step, else the code of its kind.</summary>
    public static StatusCode StatusOf(AggregationFailureKind kind) => kind switch
    {
        AggregationFailureKind.Timeout or AggregationFailureKind.Closed or AggregationFailureKind.Mismatch or AggregationFailureKind.Superseded => StatusCode.Aborted,
        AggregationFailureKind.Unavailable => StatusCode.Unavailable,
        AggregationFailureKind.Stale or AggregationFailureKind.AttemptOver => StatusCode.FailedPrecondition,
        AggregationFailureKind.Invalid => StatusCode.InvalidArgument,
        AggregationFailureKind.RankTaken => StatusCode.AlreadyExists,
        AggregationFailureKind.Unauthenticated => StatusCode.Unauthenticated,
        _ => StatusCode.Internal,
    };

    /// <summary>
    /// The failure as the stream's status. A failed step carries two trailers besides its message,
    /// so a client can tell which rank broke the trial and how without parsing text
    /// (<see cref="GradientExchange.FailedRankTrailer"/>, <see cref="GradientExchange.FailureTrailer"/>).
    /// </summary>
    public static RpcException ToRpcException(AggregationFailure failure)
    {
        var status = new Status(StatusOf(failure.Kind), failure.Message);
        if (!failure.FailsStep) return new RpcException(status);
        return new RpcException(status, new Metadata
        {
            { GradientExchange.FailedRankTrailer, failure.FailedRank.ToString(CultureInfo.InvariantCulture) },
            { GradientExchange.FailureTrailer, failure.Label },
        });
    }

    /// <summary>The gradient socket's last frame for <paramref name="failure"/>: what the gRPC stream would have ended with.</summary>
    public static byte[] ToSocketFrame(AggregationFailure failure) => GradientSocketFrames.Failure(ToRpcException(failure));
}

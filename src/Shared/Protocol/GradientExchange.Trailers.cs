namespace Orchestrator.Protocol.V1;

// Part of the gradient wire contract (protos/orchestrator/v1/gradients.proto) that a .proto file
// cannot state: the trailers of an ABORTED gradient stream, read by the worker's client.
public static partial class GradientExchange
{
    /// <summary>Trailer of an ABORTED stream: the rank that made the step fail (decimal).</summary>
    public const string FailedRankTrailer = "orch-failed-rank";

    /// <summary>Trailer of an ABORTED stream: <c>timeout</c>, <c>closed</c> or <c>mismatch</c>.</summary>
    public const string FailureTrailer = "orch-failure";
}

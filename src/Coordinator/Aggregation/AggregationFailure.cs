using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Runtime.CompilerServices;

namespace Orchestrator.Coordinator.Aggregation;

/// <summary>Why a rank's gradient exchange ended or could not start.</summary>
public enum AggregationFailureKind
{
    /// <summary>A rank stalled past the stall timeout, or ranks did not join in time (the step fails for every rank).</summary>
    Timeout,
    /// <summary>A rank closed or lost its connection mid-step (the step fails for every rank).</summary>
    Closed,
    /// <summary>A rank broke the protocol or disagrees with the others about a step (the step fails for every rank).</summary>
    Mismatch,
    /// <summary>A newer attempt of the trial opened its own exchange.</summary>
    Superseded,
    /// <summary>The coordinator cannot serve the exchange now (shutting down, state store unreachable).</summary>
    Unavailable,
    /// <summary>The fencing token is not the trial's current assignment: the worker must stop the trial.</summary>
    Stale,
    /// <summary>This attempt's exchange already failed or ended: the trial must be assigned again.</summary>
    AttemptOver,
    /// <summary>A header or hello that is wrong on its own.</summary>
    Invalid,
    /// <summary>The rank already has a stream in this exchange.</summary>
    RankTaken,
    /// <summary>No token, or the wrong one.</summary>
    Unauthenticated,
}

/// <summary>
/// A typed failure of the gradient exchange: what went wrong, for people, and which rank made a
/// step fail (-1 when no rank is to blame). Each transport turns it into its own status (the gRPC
/// stream's status and trailers, the gradient socket's failure frame).
/// </summary>
public sealed record AggregationFailure(AggregationFailureKind Kind, string Message, int FailedRank = -1)
{
    /// <summary>A step failed for every rank of the trial (timeout, closed, mismatch), blaming <see cref="FailedRank"/>.</summary>
    public bool FailsStep => Kind is AggregationFailureKind.Timeout or AggregationFailureKind.Closed or AggregationFailureKind.Mismatch;

    /// <summary>The kind as a label (metrics, the failure trailer): "timeout", "closed", "mismatch", "superseded"…</summary>
    public string Label => Kind switch
    {
        AggregationFailureKind.AttemptOver => "attempt_over",
        AggregationFailureKind.RankTaken => "rank_taken",
        _ => Kind.ToString().ToLowerInvariant(),
    };

    internal static AggregationFailure Stalled(string trialId, int rank, TimeSpan timeout) =>
        new(AggregationFailureKind.Timeout, $"Gradient aggregation of trial {trialId} failed: rank {rank} sent nothing for {timeout.TotalSeconds:0.###} s while the other ranks waited for it (stalled, or not in this collective).", rank);

    internal static AggregationFailure NotJoined(string trialId, IReadOnlyList<int> missing, TimeSpan timeout) =>
        new(AggregationFailureKind.Timeout, $"Gradient aggregation of trial {trialId} failed: rank(s) {string.Join(", ", missing)} did not open their stream within {timeout.TotalSeconds:0.###} s.", missing[0]);

    internal static AggregationFailure Disconnected(string trialId, int rank, bool clean) =>
        new(AggregationFailureKind.Closed, clean
            ? $"Gradient aggregation of trial {trialId} failed: rank {rank} closed its stream while the other ranks still reduce (it stopped, or failed itself)."
            : $"Gradient aggregation of trial {trialId} failed: rank {rank} disconnected mid-step (it stopped, died, or failed itself).", rank);

    internal static AggregationFailure Mismatch(string trialId, int rank, string what) =>
        new(AggregationFailureKind.Mismatch, $"Gradient aggregation of trial {trialId} failed: rank {rank} {what}. Every rank must reduce buffers of the same length in the same order.", rank);

    internal static AggregationFailure Superseded(string trialId, long token) =>
        new(AggregationFailureKind.Superseded, $"Gradient aggregation of trial {trialId} ended: the trial was assigned again (fencing token {token.ToString(CultureInfo.InvariantCulture)}).");

    internal static AggregationFailure ShuttingDown() =>
        new(AggregationFailureKind.Unavailable, "the coordinator is shutting down; the trial resumes from its last checkpoint when it is back");

    internal static AggregationFailure LeaseUnchecked(string why) =>
        new(AggregationFailureKind.Unavailable, "the coordinator cannot check the trial's assignment: " + why);

    [DoesNotReturn, MethodImpl(MethodImplOptions.NoInlining)]
    internal static void ThrowStale(string trialId, long token) =>
        throw new AggregationException(new AggregationFailure(AggregationFailureKind.Stale,
            $"fencing token {token.ToString(CultureInfo.InvariantCulture)} is not the current assignment of trial {trialId}; this worker must stop the trial"));

    [DoesNotReturn, MethodImpl(MethodImplOptions.NoInlining)]
    internal static void ThrowInvalid(string message) =>
        throw new AggregationException(new AggregationFailure(AggregationFailureKind.Invalid, message));

    [DoesNotReturn, MethodImpl(MethodImplOptions.NoInlining)]
    internal static void ThrowRankTaken(string trialId, int rank) =>
        throw new AggregationException(new AggregationFailure(AggregationFailureKind.RankTaken, $"rank {rank} of trial {trialId} already has a gradient stream"));

    [DoesNotReturn, MethodImpl(MethodImplOptions.NoInlining)]
    internal static void ThrowAttemptOver(string trialId) =>
        throw new AggregationException(new AggregationFailure(AggregationFailureKind.AttemptOver,
            $"the gradient aggregation of this attempt of trial {trialId} has already failed or ended; the trial must be assigned again"));

    [DoesNotReturn, MethodImpl(MethodImplOptions.NoInlining)]
    internal static void ThrowUnauthenticated() =>
        throw new AggregationException(new AggregationFailure(AggregationFailureKind.Unauthenticated, "missing or wrong token (set ORCH_TOKEN)"));
}

/// <summary>Thrown by the gradient exchange with its typed <see cref="AggregationFailure"/>.</summary>
public sealed class AggregationException : Exception
{
    public AggregationException(AggregationFailure failure) : base(failure?.Message) => Failure = failure!;

    public AggregationException() : this(new AggregationFailure(AggregationFailureKind.Invalid, "gradient exchange failure")) { }

    public AggregationException(string message) : this(new AggregationFailure(AggregationFailureKind.Invalid, message)) { }

    public AggregationException(string message, Exception inner) : base(message, inner) =>
        Failure = new AggregationFailure(AggregationFailureKind.Invalid, message);

    public AggregationFailure Failure { get; }
}

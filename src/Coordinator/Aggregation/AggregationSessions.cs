using Microsoft.Extensions.Options;
using Orchestrator.Coordinator.Configuration;

namespace Orchestrator.Coordinator.Aggregation;

/// <summary>
/// The live gradient-exchange sessions, one per trial: the first rank's stream opens the trial's
/// session, the others join it, and a newer attempt of the trial (a higher fencing token) ends
/// the older one.
/// </summary>
public sealed class AggregationSessions(IOptions<GradientAggregationOptions> options, IOptions<CoordinatorOptions> coordinator, TimeProvider clock, GradientExchangeMetrics metrics)
{
    /// <summary>Protobuf framing around a chunk's data (tags, lengths, step, index): well under this.</summary>
    private const int ChunkOverheadBytes = 64;

    private readonly Dictionary<string, AggregationSession> _sessions = new(StringComparer.Ordinal);

    /// <summary>Sessions currently held (for tests and diagnostics).</summary>
    public int Count
    {
        get
        {
            lock (_sessions) return _sessions.Count;
        }
    }

    /// <summary>The largest chunk, in floats, that fits the coordinator's gRPC message limit.</summary>
    public int MaxChunkFloats => (coordinator.Value.MaxMessageBytes - ChunkOverheadBytes) / sizeof(float);

    /// <summary>Checks a header on its own (<see cref="AggregationFailureKind.Invalid"/>), before the lease is looked up.</summary>
    public void Validate(GradientStreamSpec header)
    {
        if (string.IsNullOrEmpty(header.TrialId) || header.TrialId.Length > 200)
            AggregationFailure.ThrowInvalid("header.trial_id must be 1 to 200 characters");
        if (header.WorldSize < 1 || header.WorldSize > 4096)
            AggregationFailure.ThrowInvalid($"header.world_size {header.WorldSize} must be 1 to 4096");
        if (header.Rank < 0 || header.Rank >= header.WorldSize)
            AggregationFailure.ThrowInvalid($"header.rank {header.Rank} must be in [0, {header.WorldSize})");
        if (header.ChunkFloats < 1 || header.ChunkFloats > MaxChunkFloats)
            AggregationFailure.ThrowInvalid($"header.chunk_floats {header.ChunkFloats} must be 1 to {MaxChunkFloats} (chunks must fit the coordinator's {coordinator.Value.MaxMessageBytes}-byte message limit)");
        if (header.MaxBufferFloats < 0 || header.MaxBufferFloats > options.Value.MaxBufferFloats)
            AggregationFailure.ThrowInvalid($"header.max_buffer_floats {header.MaxBufferFloats} must be 0 to {options.Value.MaxBufferFloats}");
    }

    /// <summary>
    /// Joins the rank to its trial's session, opening it when this is the first rank (or a newer
    /// attempt). Throws an <see cref="AggregationException"/> with the failure the stream must end with when the rank cannot join.
    /// </summary>
    internal (AggregationSession Session, RankPort Port) Join(GradientStreamSpec header)
    {
        lock (_sessions)
        {
            if (_sessions.TryGetValue(header.TrialId, out var session))
            {
                if (session.FencingToken > header.FencingToken) AggregationFailure.ThrowStale(header.TrialId, header.FencingToken);
                if (session.FencingToken < header.FencingToken || session.Finished)
                {
                    // A newer attempt: whatever is left of the old one must not reduce with it.
                    if (!session.Finished) session.Fail(AggregationFailure.Superseded(header.TrialId, header.FencingToken));
                    metrics.SessionClosed();
                    session = null;
                }
            }
            if (session is null)
            {
                var max = header.MaxBufferFloats == 0 ? options.Value.MaxBufferFloats : header.MaxBufferFloats;
                session = new AggregationSession(header, max, options.Value, clock, metrics);
                _sessions[header.TrialId] = session;
                metrics.SessionOpened();
            }
            return (session, session.Join(header));
        }
    }

    /// <summary>A rank's handler ended; forgets the session once none is left.</summary>
    internal void Leave(AggregationSession session)
    {
        session.Release();
        lock (_sessions)
        {
            if (session.Finished && _sessions.TryGetValue(session.TrialId, out var current) && ReferenceEquals(current, session))
            {
                _sessions.Remove(session.TrialId);
                metrics.SessionClosed();
            }
        }
    }
}

namespace Orchestrator.Worker.Distributed;

/// <summary>Why a collective failed.</summary>
public enum CollectiveFailure
{
    /// <summary>The ring could not be formed (peer unreachable, handshake refused).</summary>
    ConnectFailed,

    /// <summary>A neighbour sent or accepted nothing for the configured timeout.</summary>
    Timeout,

    /// <summary>A neighbour closed or reset its connection (stopped, died, or failed itself).</summary>
    PeerClosed,

    /// <summary>The ranks disagree (buffer length, call order, configuration).</summary>
    Mismatch,

    /// <summary>An earlier collective on this instance failed; the ring is broken.</summary>
    Broken,
}

/// <summary>
/// A collective operation failed on this rank. Says which peer and what happened; the same
/// failure reaches every rank, each naming its own neighbour.
/// </summary>
public sealed class CollectiveException : Exception
{
    /// <summary>Creates the exception.</summary>
    public CollectiveException(CollectiveFailure failure, int rank, int? peerRank, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        Failure = failure;
        Rank = rank;
        PeerRank = peerRank;
    }

    /// <summary>What happened.</summary>
    public CollectiveFailure Failure { get; }

    /// <summary>The rank that threw.</summary>
    public int Rank { get; }

    /// <summary>The neighbour involved, when there is one.</summary>
    public int? PeerRank { get; }
}

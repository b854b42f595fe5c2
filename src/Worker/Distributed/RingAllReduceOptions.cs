namespace Orchestrator.Worker.Distributed;

/// <summary>How gradient values travel between ranks.</summary>
public enum WireFormat
{
    /// <summary>IEEE fp32, bit-exact.</summary>
    Fp32,

    /// <summary>
    /// bfloat16 (round to nearest even), half the bytes. Partial sums are rounded at each hop;
    /// the final division and the result are fp32 values that are exactly representable in bf16.
    /// </summary>
    Bf16,
}

/// <summary>Configuration of one rank of a <see cref="RingAllReduce"/>.</summary>
public sealed class RingAllReduceOptions
{
    /// <summary>This process's rank (index into <see cref="Endpoints"/>).</summary>
    public int Rank { get; set; }

    /// <summary>Every rank's listening endpoint, indexed by rank (this rank's included).</summary>
    public IReadOnlyList<RingEndpoint> Endpoints { get; set; } = [];

    /// <summary>Mean (default) or sum.</summary>
    public ReduceOperation Operation { get; set; } = ReduceOperation.Mean;

    /// <summary>fp32 (default) or bf16 on the wire.</summary>
    public WireFormat Wire { get; set; } = WireFormat.Fp32;

    /// <summary>
    /// How long a neighbour may go without sending or accepting a byte before the collective fails
    /// with <see cref="CollectiveFailure.Timeout"/>. It bounds a stalled peer; a peer that dies is
    /// noticed at once (its kernel closes the connection). It must exceed the skew between ranks'
    /// arrivals at a step.
    /// </summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// The secret every rank of this ring was given (the coordinator makes one per assignment).
    /// A connecting rank proves it holds it with an HMAC-SHA256 of the acceptor's fresh nonce, so
    /// a process without it cannot join or feed the ring, and a recorded handshake cannot be
    /// replayed. Empty: every rank must have it empty too.
    /// </summary>
    public byte[] Secret { get; set; } = [];

    /// <summary>How long connecting the ring may take, retries included.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Pipelining unit, in fp32 bytes (bf16 sends half as many bytes per chunk). A segment moves
    /// on to the next rank chunk by chunk, so the hops of a ring overlap.
    /// </summary>
    public int ChunkBytes { get; set; } = 1 << 20;

    /// <summary>
    /// SO_SNDBUF / SO_RCVBUF per socket; 0 (default) leaves the kernel's default. Setting it turns
    /// off Linux's buffer autotuning, and on the 2-core loopback benchmark 4 MB fixed buffers were
    /// about twice as slow as autotuned ones (bench/README.md); set it for long fat links only.
    /// </summary>
    public int SocketBufferBytes { get; set; }

    internal void Validate()
    {
        ArgumentNullException.ThrowIfNull(Endpoints);
        ArgumentOutOfRangeException.ThrowIfZero(Endpoints.Count, nameof(Endpoints));
        ArgumentOutOfRangeException.ThrowIfNegative(Rank);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(Rank, Endpoints.Count);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(Timeout, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(ConnectTimeout, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(ChunkBytes, 64);
        ArgumentOutOfRangeException.ThrowIfNegative(SocketBufferBytes);
        if (!Enum.IsDefined(Operation)) throw new ArgumentOutOfRangeException(nameof(Operation));
        if (!Enum.IsDefined(Wire)) throw new ArgumentOutOfRangeException(nameof(Wire));
    }
}

using Grpc.Core;

namespace Orchestrator.Worker.Distributed;

/// <summary>Configuration of one rank of a <see cref="CoordinatorAllReduce"/>.</summary>
public sealed class CoordinatorAllReduceOptions
{
    /// <summary>Smallest chunk: below it gRPC's per-message cost dominates (measured on loopback).</summary>
    public const int MinChunkBytes = 256 * 1024;

    /// <summary>The trial whose gradients these are.</summary>
    public string TrialId { get; set; } = "";

    /// <summary>The fencing token of this assignment; the coordinator refuses an older one.</summary>
    public long FencingToken { get; set; }

    /// <summary>This process's rank, 0 ≤ rank &lt; <see cref="WorldSize"/>.</summary>
    public int Rank { get; set; }

    /// <summary>Ranks in the trial.</summary>
    public int WorldSize { get; set; }

    /// <summary>
    /// Bytes of fp32 per gRPC message. It must stay below the coordinator's message limit (4 MB by
    /// default, CoordinatorOptions.MaxMessageBytes); 1 MB keeps the pipeline deep enough that the
    /// first means come back while the rest of the buffer is still being sent.
    /// </summary>
    public int ChunkBytes { get; set; } = 1 << 20;

    /// <summary>
    /// How long a collective may go without a message from the coordinator before it fails with
    /// <see cref="CollectiveFailure.Timeout"/>. It bounds a coordinator that hangs; a stalled or
    /// dead peer is reported sooner, by the coordinator, naming the rank, so this must exceed the
    /// coordinator's stall timeout (10 s by default).
    /// </summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How long joining may take: until every rank of the trial opened its stream.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// Number format on the wire, both ways: fp32, or bf16 (half the bytes; the coordinator sums
    /// in fp32 and sends the mean rounded to bf16). Every rank of a trial must use the same.
    /// </summary>
    public WireFormat Wire { get; set; } = WireFormat.Fp32;

    /// <summary>
    /// TLS toward the coordinator (its address is https://): how its certificate is checked and the
    /// client certificate presented, on the gRPC stream and on the TCP gradient socket. Null: plain text.
    /// </summary>
    public System.Net.Security.SslClientAuthenticationOptions? Tls { get; set; }

    /// <summary>Call headers (the bearer token when the coordinator wants one).</summary>
    public Metadata? Headers { get; set; }

    internal int ChunkFloats => ChunkBytes / sizeof(float);

    /// <summary>Bytes per value on the wire.</summary>
    internal int ValueBytes => Wire == WireFormat.Bf16 ? sizeof(ushort) : sizeof(float);

    internal void Validate()
    {
        ArgumentException.ThrowIfNullOrEmpty(TrialId);
        ArgumentOutOfRangeException.ThrowIfLessThan(WorldSize, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(Rank);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(Rank, WorldSize);
        ArgumentOutOfRangeException.ThrowIfLessThan(ChunkBytes, MinChunkBytes);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(Timeout, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(ConnectTimeout, TimeSpan.Zero);
    }
}

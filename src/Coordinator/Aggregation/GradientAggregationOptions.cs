namespace Orchestrator.Coordinator.Aggregation;

/// <summary>
/// Settings of the coordinator's gradient aggregation (configuration section
/// "GradientAggregation"), used by trials whose sweep sets <c>resources.aggregation: coordinator</c>.
/// </summary>
public sealed class GradientAggregationOptions
{
    /// <summary>
    /// How long a rank may send nothing while the other ranks of its trial wait for its chunks.
    /// Past it the step fails for every rank (ABORTED, naming the rank). It must exceed the skew
    /// between ranks' arrivals at a step, as the ring's timeout does.
    /// </summary>
    public TimeSpan StallTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How long the first rank of a trial waits for the others to open their streams.</summary>
    public TimeSpan JoinTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Largest buffer (floats) one step may carry: 1 GiB of fp32 by default.</summary>
    public long MaxBufferFloats { get; set; } = 1L << 28;

    /// <summary>
    /// TCP port of the gradient socket (the data plane that skips gRPC framing); 0 picks a free
    /// port, null turns it off (ranks then use the GradientExchange gRPC stream).
    /// </summary>
    public int? SocketPort { get; set; }

    /// <summary>Address the gradient socket listens on.</summary>
    public string SocketAddress { get; set; } = "127.0.0.1";

    /// <summary>
    /// Also listen on a Unix domain socket, for workers on the coordinator's machine (faster than
    /// loopback TCP): its path is made per start under the temporary folder. Only with <see cref="SocketPort"/>.
    /// </summary>
    public bool UnixSocket { get; set; } = true;
}

namespace Orchestrator.Coordinator.Aggregation;

/// <summary>Where the gradient socket listens, once it does (read when trials are assigned).</summary>
public sealed class GradientSocketEndpoint
{
    private volatile string? _advertised;

    /// <summary>The bound port; null while the socket is off or not started.</summary>
    public int? Port { get; private set; }

    /// <summary>":PORT" for AssignTrial.gradient_endpoint; null when ranks must use the gRPC stream.</summary>
    public string? Advertised => _advertised;

    /// <summary>The Unix domain socket of the same listener, for workers on this machine (AssignTrial.gradient_socket_path); null when none.</summary>
    public string? UnixPath { get; private set; }

    internal void Set(int? port, string? unixPath = null)
    {
        Port = port;
        UnixPath = unixPath;
        _advertised = port is { } p ? ":" + p.ToString(System.Globalization.CultureInfo.InvariantCulture) : null;
    }
}

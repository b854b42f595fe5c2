using System.Net;
using System.Net.Sockets;

namespace Orchestrator.Worker.Distributed;

/// <summary>
/// Where one rank listens: <c>host:port</c> (TCP, across hosts) or <c>unix:/path</c> (Unix domain
/// socket, for ranks on one host, which skips the TCP/IP stack).
/// </summary>
public sealed record RingEndpoint
{
    private RingEndpoint(string display, string? host, int port, string? path)
    {
        Display = display;
        Host = host;
        Port = port;
        UnixPath = path;
    }

    /// <summary>The text form, as <see cref="Parse"/> reads it.</summary>
    public string Display { get; }

    /// <summary>Host name or address for TCP; null for a Unix socket.</summary>
    public string? Host { get; }

    /// <summary>TCP port; 0 for a Unix socket.</summary>
    public int Port { get; }

    /// <summary>Socket file path for a Unix socket; null for TCP.</summary>
    public string? UnixPath { get; }

    /// <summary>True for a Unix domain socket.</summary>
    public bool IsUnix => UnixPath is not null;

    /// <summary>A TCP endpoint.</summary>
    public static RingEndpoint Tcp(string host, int port)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(host);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(port);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(port, IPEndPoint.MaxPort);
        var display = host.Contains(':', StringComparison.Ordinal) ? $"[{host}]:{port}" : $"{host}:{port}";
        return new RingEndpoint(display, host, port, null);
    }

    /// <summary>A Unix domain socket endpoint.</summary>
    public static RingEndpoint Unix(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        return new RingEndpoint("unix:" + path, null, 0, path);
    }

    /// <summary>Reads <c>unix:/path</c>, <c>host:port</c> or <c>[v6-address]:port</c>.</summary>
    public static RingEndpoint Parse(string text)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(text);
        if (text.StartsWith("unix:", StringComparison.Ordinal)) return Unix(text["unix:".Length..]);
        var colon = text.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(text.AsSpan(colon + 1), out var port))
            throw new FormatException($"'{text}' is neither 'host:port' nor 'unix:/path'.");
        return Tcp(text[..colon].Trim('[', ']'), port);
    }

    /// <inheritdoc />
    public override string ToString() => Display;

    /// <summary>The socket address, resolving a host name (IPv4 preferred) for TCP.</summary>
    internal EndPoint Resolve()
    {
        if (UnixPath is not null) return new UnixDomainSocketEndPoint(UnixPath);
        if (IPAddress.TryParse(Host, out var address)) return new IPEndPoint(address, Port);
        var addresses = Dns.GetHostAddresses(Host!);
        var chosen = addresses.FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork) ?? addresses.FirstOrDefault()
            ?? throw new SocketException((int)SocketError.HostNotFound);
        return new IPEndPoint(chosen, Port);
    }

    /// <summary>A stream socket of the right family, not yet bound or connected.</summary>
    internal Socket CreateSocket(EndPoint endPoint) => IsUnix
        ? new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
        : new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
}

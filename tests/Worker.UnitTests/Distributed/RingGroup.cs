using System.Net;
using System.Net.Sockets;
using Orchestrator.TestSupport;
using Orchestrator.Worker.Distributed;

namespace Orchestrator.Worker.UnitTests.Distributed;

/// <summary>Which socket family a test ring uses.</summary>
public enum Transport
{
    Tcp,
    Unix,
}

/// <summary>
/// W ranks of a ring in this process, over loopback TCP or Unix sockets. Listeners are bound
/// before any rank connects (TCP to port 0), so tests never race for ports.
/// </summary>
internal sealed class RingGroup : IAsyncDisposable
{
    private readonly string? _directory;

    private RingGroup(RingAllReduce[] ranks, string? directory)
    {
        Ranks = ranks;
        _directory = directory;
    }

    public RingAllReduce[] Ranks { get; }

    public static async Task<RingGroup> CreateAsync(int world, Transport transport, Action<RingAllReduceOptions>? configure = null)
    {
        var directory = transport == Transport.Unix ? Directory.CreateTempSubdirectory("orch-ring-").FullName : null;
        var listeners = new Socket[world];
        var endpoints = new RingEndpoint[world];
        for (var r = 0; r < world; r++)
        {
            if (transport == Transport.Tcp)
            {
                listeners[r] = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                listeners[r].Bind(new IPEndPoint(IPAddress.Loopback, 0));
                endpoints[r] = RingEndpoint.Tcp("127.0.0.1", ((IPEndPoint)listeners[r].LocalEndPoint!).Port);
            }
            else
            {
                var path = Path.Combine(directory!, $"rank{r}.sock");
                listeners[r] = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                listeners[r].Bind(new UnixDomainSocketEndPoint(path));
                endpoints[r] = RingEndpoint.Unix(path);
            }
            listeners[r].Listen(8);
        }
        var connecting = Enumerable.Range(0, world).Select(r =>
        {
            var options = new RingAllReduceOptions { Rank = r, Endpoints = endpoints, ConnectTimeout = TimeSpan.FromSeconds(20) };
            configure?.Invoke(options);
            return RingAllReduce.ConnectAsync(options, listeners[r], CancellationToken.None);
        }).ToArray();
        var ranks = await Task.WhenAll(connecting).DefaultTimeout();
        return new RingGroup(ranks, directory);
    }

    /// <summary>All ranks reduce their own buffer at once; returns when all are done.</summary>
    public Task AllReduceAsync(float[][] buffers, CancellationToken cancellationToken = default) =>
        Task.WhenAll(Ranks.Select((rank, r) => rank.AllReduceAsync(buffers[r], cancellationToken).AsTask())).DefaultTimeout();

    public async ValueTask DisposeAsync()
    {
        foreach (var rank in Ranks) await rank.DisposeAsync().AsTask().DefaultTimeout();
        if (_directory is not null) Directory.Delete(_directory, recursive: true);
    }
}

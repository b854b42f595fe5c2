using Microsoft.Extensions.Logging.Abstractions;
using Orchestrator.Worker.Distributed;

namespace Orchestrator.Worker.UnitTests.Distributed;

public sealed class GradientTransportTests
{
    private static GradientTransportRequest Request(int rank, int worldSize, params string[] peers) => new()
    {
        TrialId = "sw-1-t0001",
        FencingToken = 3,
        Rank = rank,
        WorldSize = worldSize,
        PeerEndpoints = peers,
        Coordinator = new Uri("http://127.0.0.1:1"),
    };

    [Fact]
    public async Task A_ring_assignment_whose_peers_do_not_match_its_world_size_is_refused_before_any_connection()
    {
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() =>
            GradientTransport.ConnectAsync(Request(0, 3, "10.0.0.1:7000", "10.0.0.2:7000"), NullLogger.Instance, CancellationToken.None));
        Assert.Equal("assignment lists 2 peer endpoints for world size 3", e.Message);
    }

    [Fact]
    public void Ranks_on_one_host_agree_on_one_Unix_socket_each_named_after_the_lease()
    {
        var rank0 = GradientTransport.UnixEndpoints(Request(0, 2, "a:1", "a:2"));
        var rank1 = GradientTransport.UnixEndpoints(Request(1, 2, "a:1", "a:2"));
        Assert.Equal(rank0.Select(e => e.UnixPath!), rank1.Select(e => e.UnixPath!));
        Assert.Equal(2, rank0.Select(e => e.UnixPath!).Distinct().Count());
        // A new lease (a re-queued trial) gets new sockets, so a stale one never joins.
        var next = GradientTransport.UnixEndpoints(Request(0, 2, "a:1", "a:2") with { FencingToken = 4 });
        Assert.Empty(next.Select(e => e.UnixPath!).Intersect(rank0.Select(e => e.UnixPath!)));
        Assert.All(rank0, e => Assert.True(e.UnixPath!.Length < 107, e.UnixPath));
    }
}

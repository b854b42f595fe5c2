using Orchestrator.Coordinator.Domain;
using Orchestrator.Coordinator.State;
using Orchestrator.Coordinator.State.Redis;
using Orchestrator.TestSupport;

namespace Orchestrator.Coordinator.UnitTests.State;

/// <summary>Starts one real redis-server for the Redis store tests (they share it under distinct key prefixes).</summary>
public sealed class RedisServerFixture : IAsyncLifetime
{
    private RedisServer? _server;

    /// <summary>The running server.</summary>
    public RedisServer Server => _server ?? throw new InvalidOperationException("redis-server did not start; see the fixture's error.");

    public async Task InitializeAsync() => _server = await RedisServer.StartAsync(CancellationToken.None).DefaultTimeout();

    // Nothing to stop when the start failed (e.g. redis-server is not installed).
    public async Task DisposeAsync()
    {
        if (_server is not null) await _server.DisposeAsync().AsTask().DefaultTimeout();
    }
}

/// <summary>The state store contract on a real redis-server.</summary>
public sealed class RedisStateStoreTests(RedisServerFixture redis) : StateStoreContract, IClassFixture<RedisServerFixture>
{
    // Short client timeouts so that a call while Redis is down fails in seconds.
    private string Configuration => redis.Server.Configuration + ",connectTimeout=2000,asyncTimeout=3000,syncTimeout=3000";

    protected override async Task<IStateStore> OpenStoreAsync(CancellationToken ct) =>
        await RedisStateStore.ConnectAsync(Configuration, $"test:{Guid.NewGuid():N}:", ct);

    // kill -9 and restart on the same port and folder: the append-only file (fsync per write)
    // must bring everything back, and the same store instance must reconnect by itself.
    protected override async Task<IStateStore> RestartAsync(IStateStore store, CancellationToken ct)
    {
        await redis.Server.KillAsync(ct);

        await Assert.ThrowsAsync<StateStoreUnavailableException>(() => store.ListSweepsAsync(ct)).WaitAsync(TimeSpan.FromSeconds(20), ct);
        await Assert.ThrowsAsync<StateStoreUnavailableException>(() => store.AppendMetricAsync("s1-t0001", 4, Point(9), ct)).WaitAsync(TimeSpan.FromSeconds(20), ct);

        await redis.Server.RestartAsync(ct);
        await WaitUntilReachableAsync(store, ct);
        return store;
    }

    private static async Task WaitUntilReachableAsync(IStateStore store, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            try
            {
                await store.GetSweepAsync("probe", ct).WaitAsync(TimeSpan.FromSeconds(10), ct);
                return;
            }
            catch (StateStoreUnavailableException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(100, ct);
            }
        }
    }

    [Fact]
    public async Task Stores_with_different_prefixes_do_not_see_each_other()
    {
        var a = await NewStoreAsync();
        var b = await NewStoreAsync();
        await a.CreateSweepAsync(Sweep("s1"), Trials("s1", 1), Ct).DefaultTimeout();
        await a.UpsertWorkerAsync(Worker("w1"), Ct).DefaultTimeout();
        Assert.Empty(await b.ListSweepsAsync(Ct).DefaultTimeout());
        Assert.Null(await b.GetTrialAsync("s1-t0000", Ct).DefaultTimeout());
        Assert.Empty(await b.ListWorkersAsync(Ct).DefaultTimeout());
        await b.CreateSweepAsync(Sweep("s1"), Trials("s1", 1), Ct).DefaultTimeout();
    }

    [Fact]
    public async Task A_store_opened_while_redis_is_unreachable_fails_calls_instead_of_hanging()
    {
        // Nothing listens on this port: connecting still returns, calls report the store unavailable.
        var port = RedisServer.FreePort();
        await using var store = await RedisStateStore.ConnectAsync($"127.0.0.1:{port},connectTimeout=1000,asyncTimeout=2000", "x:", Ct).DefaultTimeout();
        await Assert.ThrowsAsync<StateStoreUnavailableException>(() => store.GetSweepAsync("s1", Ct)).DefaultTimeout();
    }

    [Fact]
    public async Task Data_written_before_the_indexes_existed_is_indexed_when_a_store_first_opens_it()
    {
        var prefix = $"test:{Guid.NewGuid():N}:";
        await using (var writer = await RedisStateStore.ConnectAsync(Configuration, prefix, Ct).DefaultTimeout())
        {
            await writer.CreateSweepAsync(Sweep("s1"), Trials("s1", 3), Ct).DefaultTimeout();
            var t = (await writer.GetTrialAsync("s1-t0001", Ct).DefaultTimeout())!;
            Assert.True(await writer.TryUpdateTrialAsync(t with { State = TrialStatus.Running, FencingToken = 1, LeaseExpiresAt = T0 }, t.Version, Ct).DefaultTimeout());
        }
        // Take the data back to layout 1: no layout key, no index sets, no state field.
        await using (var raw = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(redis.Server.Configuration).DefaultTimeout())
        {
            var db = raw.GetDatabase();
            var keys = new List<StackExchange.Redis.RedisKey> { prefix + "schema", prefix + "leases" };
            for (var s = 0; s < TrialIndexEntry.StateCount; s++) keys.Add($"{prefix}sweep:s1:trials:{s}");
            await db.KeyDeleteAsync([.. keys]).DefaultTimeout();
            for (var i = 0; i < 3; i++) await db.HashDeleteAsync($"{prefix}trial:s1-t{i:0000}", "state").DefaultTimeout();
        }

        await using var upgraded = await RedisStateStore.ConnectAsync(Configuration, prefix, Ct).DefaultTimeout();
        Assert.Equal(new TrialCounts(2, 1, 0, 0, 0), await upgraded.CountTrialsAsync("s1", Ct).DefaultTimeout());
        Assert.Equal([0, 2], (await upgraded.ListPendingTrialsAsync("s1", 10, Ct).DefaultTimeout()).Select(t => t.Index));
        Assert.Equal(["s1-t0001"], (await upgraded.ListExpiredLeasesAsync(T0.AddSeconds(1), 10, Ct).DefaultTimeout()).Select(t => t.Id));
    }

    [Fact]
    public async Task Keys_written_by_a_newer_layout_are_refused_rather_than_misread()
    {
        var prefix = $"test:{Guid.NewGuid():N}:";
        await using (var raw = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(redis.Server.Configuration).DefaultTimeout())
            await raw.GetDatabase().StringSetAsync(prefix + "schema", RedisStateStore.SchemaVersion + 1).DefaultTimeout();
        await using var store = await RedisStateStore.ConnectAsync(Configuration, prefix, Ct).DefaultTimeout();
        var e = await Assert.ThrowsAsync<InvalidDataException>(() => store.ListSweepsAsync(Ct)).DefaultTimeout();
        Assert.Contains("layout", e.Message);
    }
}

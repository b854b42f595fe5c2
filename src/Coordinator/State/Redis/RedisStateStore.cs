using System.Text.Json;
using Orchestrator.Coordinator.Domain;
using StackExchange.Redis;

namespace Orchestrator.Coordinator.State.Redis;

/// <summary>
/// <see cref="IStateStore"/> on Redis, for clusters. Records are JSON (source-generated
/// <see cref="StateJson"/>) in hashes next to their version and fencing token, so Lua scripts can
/// check those without parsing JSON; see <see cref="RedisKeys"/> for the layout and
/// <see cref="RedisScripts"/> for the atomic operations. Several stores may share one Redis under
/// different key prefixes.
/// <para>
/// Connection failures and timeouts surface as <see cref="StateStoreUnavailableException"/>; the
/// multiplexer keeps reconnecting in the background, so a later call works again once Redis is
/// back. A write whose reply was lost may or may not have happened: callers re-read, which the
/// compare-and-set rule makes safe.
/// </para>
/// </summary>
public sealed partial class RedisStateStore : IStateStore, IAsyncDisposable
{
    private const string StoreName = "Redis";
    private static readonly RedisValue JsonField = "json";

    private readonly IConnectionMultiplexer _redis;
    private readonly bool _ownsConnection;
    private readonly RedisKeys _keys;

    /// <summary>Creates a store over a shared multiplexer (one per process; the caller disposes it).</summary>
    /// <param name="redis">The process's multiplexer.</param>
    /// <param name="keyPrefix">Prepended to every key, e.g. <c>orch:</c>.</param>
    public RedisStateStore(IConnectionMultiplexer redis, string keyPrefix)
        : this(redis, keyPrefix, ownsConnection: false)
    {
    }

    private RedisStateStore(IConnectionMultiplexer redis, string keyPrefix, bool ownsConnection)
    {
        ArgumentNullException.ThrowIfNull(redis);
        _redis = redis;
        _keys = new RedisKeys(keyPrefix);
        KeyPrefix = keyPrefix;
        _ownsConnection = ownsConnection;
    }

    /// <summary>The key prefix this store writes under.</summary>
    public string KeyPrefix { get; }

    /// <summary>
    /// Connects a multiplexer configured to survive Redis restarts and returns a store that owns
    /// it (disposing the store closes the connection). Returns even while Redis is down: calls
    /// fail with <see cref="StateStoreUnavailableException"/> until it is reachable.
    /// </summary>
    /// <param name="configuration">A StackExchange.Redis configuration string, e.g. <c>localhost:6379</c>.</param>
    /// <param name="prefix">Prepended to every key.</param>
    /// <param name="ct">Cancels waiting for the connection (it goes on connecting in the background until disposed).</param>
    public static async Task<RedisStateStore> ConnectAsync(string configuration, string prefix, CancellationToken ct)
    {
        var options = CreateOptions(configuration);
        var redis = await ConnectionMultiplexer.ConnectAsync(options).WaitAsync(ct).ConfigureAwait(false);
        return new RedisStateStore(redis, prefix, ownsConnection: true);
    }

    /// <summary>
    /// The multiplexer options the store relies on, from a configuration string: never give up
    /// connecting (Redis may start after us or restart under us), retry quickly, and keep
    /// commands queued while disconnected only until their timeout so callers see a failure
    /// rather than a hang.
    /// </summary>
    public static ConfigurationOptions CreateOptions(string configuration)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(configuration);
        var options = ConfigurationOptions.Parse(configuration);
        options.AbortOnConnectFail = false;
        // The default back-off grows to minutes; a restarted Redis should be picked up in about a second.
        options.ReconnectRetryPolicy = new ExponentialRetry(deltaBackOffMilliseconds: 250, maxDeltaBackOffMilliseconds: 2000);
        options.BacklogPolicy = BacklogPolicy.Default;
        return options;
    }

    /// <inheritdoc />
    public async Task CreateSweepAsync(SweepRecord sweep, IReadOnlyList<TrialRecord> trials, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(sweep);
        StateStoreErrors.ValidateTrials(sweep.Id, trials);
        ct.ThrowIfCancellationRequested();

        var keys = new RedisKey[4 + RedisKeys.IndexKeyCount + trials.Count];
        keys[0] = _keys.Sweeps;
        keys[1] = _keys.SweepSeq;
        keys[2] = _keys.Sweep(sweep.Id);
        keys[3] = _keys.SweepTrials(sweep.Id);
        _keys.FillIndexKeys(sweep.Id, keys.AsSpan(4));
        var args = new RedisValue[3 + trials.Count * RedisScripts.FieldsPerTrial];
        args[0] = sweep.Id;
        args[1] = sweep.Version;
        args[2] = JsonSerializer.SerializeToUtf8Bytes(sweep, StateJson.Default.SweepRecord);
        FillTrials(trials, keys.AsSpan(4 + RedisKeys.IndexKeyCount), args.AsSpan(3));

        await EnsureSchemaAsync(ct).ConfigureAwait(false);
        var reply = (long)await RunAsync(_redis.GetDatabase().ScriptEvaluateAsync(RedisScripts.CreateSweep, keys, args), ct).ConfigureAwait(false);
        if (reply == 0) StateStoreErrors.ThrowSweepExists(sweep.Id);
        if (reply < 0) StateStoreErrors.ThrowTrialExists(trials[(int)(-reply) - 1].Id);
    }

    /// <inheritdoc />
    public async Task<SweepRecord?> GetSweepAsync(string sweepId, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(sweepId);
        await EnsureSchemaAsync(ct).ConfigureAwait(false);
        var json = await RunAsync(_redis.GetDatabase().HashGetAsync(_keys.Sweep(sweepId), JsonField), ct).ConfigureAwait(false);
        return json.IsNull ? null : Deserialize(json, StateJson.Default.SweepRecord);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<SweepRecord>> ListSweepsAsync(CancellationToken ct)
    {
        await EnsureSchemaAsync(ct).ConfigureAwait(false);
        return await ListByScoreAsync(_keys.Sweeps, _keys.SweepKeyPrefix, "-inf", "+inf", -1, StateJson.Default.SweepRecord, ct).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<bool> TryUpdateSweepAsync(SweepRecord updated, long expectedVersion, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(updated);
        ct.ThrowIfCancellationRequested();
        var stored = updated with { Version = expectedVersion + 1 };
        await EnsureSchemaAsync(ct).ConfigureAwait(false);
        var reply = await RunAsync(_redis.GetDatabase().ScriptEvaluateAsync(
            RedisScripts.UpdateSweep,
            [_keys.Sweep(updated.Id)],
            [expectedVersion, stored.Version, JsonSerializer.SerializeToUtf8Bytes(stored, StateJson.Default.SweepRecord)]), ct).ConfigureAwait(false);
        return (long)reply == 1;
    }

    /// <inheritdoc />
    public Task UpsertWorkerAsync(WorkerRecord worker, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(worker);
        ct.ThrowIfCancellationRequested();
        return RunAsync(_redis.GetDatabase().HashSetAsync(
            _keys.Workers, worker.Id, JsonSerializer.SerializeToUtf8Bytes(worker, StateJson.Default.WorkerRecord)), ct);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<WorkerRecord>> ListWorkersAsync(CancellationToken ct)
    {
        var values = await RunAsync(_redis.GetDatabase().HashValuesAsync(_keys.Workers), ct).ConfigureAwait(false);
        var workers = new List<WorkerRecord>(values.Length);
        foreach (var value in values) workers.Add(Deserialize(value, StateJson.Default.WorkerRecord));
        // A hash has no order; sort so callers (and both stores) agree.
        workers.Sort(static (a, b) => string.CompareOrdinal(a.Id, b.Id));
        return workers;
    }

    /// <inheritdoc />
    public Task RemoveWorkerAsync(string workerId, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(workerId);
        ct.ThrowIfCancellationRequested();
        return RunAsync(_redis.GetDatabase().HashDeleteAsync(_keys.Workers, workerId), ct);
    }

    /// <summary>Closes the connection if <see cref="ConnectAsync"/> opened it.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_ownsConnection) await _redis.DisposeAsync().ConfigureAwait(false);
    }

    private void FillTrials(IReadOnlyList<TrialRecord> trials, Span<RedisKey> keys, Span<RedisValue> args)
    {
        for (var i = 0; i < trials.Count; i++)
        {
            var trial = trials[i];
            keys[i] = _keys.Trial(trial.Id);
            var a = args.Slice(i * RedisScripts.FieldsPerTrial, RedisScripts.FieldsPerTrial);
            var index = TrialIndexEntry.Of(trial);
            a[0] = trial.Id;
            a[1] = trial.Index;
            a[2] = trial.Version;
            a[3] = trial.FencingToken;
            a[4] = JsonSerializer.SerializeToUtf8Bytes(trial, StateJson.Default.TrialRecord);
            a[5] = index.State;
            a[6] = Lease(index);
        }
    }

    private static RedisValue Lease(TrialIndexEntry index) => index.LeaseExpiresMs is { } ms ? ms : RedisValue.EmptyString;

    // SE.Redis commands take no CancellationToken: the caller stops waiting on cancellation while
    // the command itself completes or times out on the connection (asyncTimeout).
    /// <inheritdoc />
    public async Task PingAsync(CancellationToken ct)
    {
        // A disconnected multiplexer would queue the PING until its timeout: say so at once instead.
        if (!_redis.IsConnected) throw new StateStoreUnavailableException($"The {StoreName} state store cannot be reached: not connected.");
        await RunAsync(_redis.GetDatabase().PingAsync(), ct).ConfigureAwait(false);
    }

    private static async Task<T> RunAsync<T>(Task<T> pending, CancellationToken ct)
    {
        try
        {
            return await pending.WaitAsync(ct).ConfigureAwait(false);
        }
        catch (RedisConnectionException e) { throw StateStoreErrors.Unavailable(StoreName, e); }
        catch (RedisTimeoutException e) { throw StateStoreErrors.Unavailable(StoreName, e); }
        // A restarted Redis answers LOADING until it has replayed its append-only file.
        catch (RedisServerException e) when (e.Message.StartsWith("LOADING", StringComparison.Ordinal)) { throw StateStoreErrors.Unavailable(StoreName, e); }
    }

    private static T Deserialize<T>(RedisValue json, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> info) =>
        JsonSerializer.Deserialize((ReadOnlySpan<byte>)(byte[])json!, info)
        ?? throw new InvalidDataException($"Redis holds a null {typeof(T).Name}.");

    private static List<T> DeserializeAll<T>(RedisResult reply, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> info)
    {
        var items = (RedisResult[])reply!;
        var list = new List<T>(items.Length);
        foreach (var item in items)
        {
            // nil: the index names a record whose hash is gone (never written by this store).
            if (item.IsNull) continue;
            list.Add(Deserialize((RedisValue)item, info));
        }
        return list;
    }
}

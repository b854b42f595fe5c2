using System.Globalization;
using System.Text.Json;
using Orchestrator.Coordinator.Domain;
using StackExchange.Redis;

namespace Orchestrator.Coordinator.State.Redis;

// Trials, their metrics and their indexes (per-state sets and the lease set; RedisKeys has the layout).
public sealed partial class RedisStateStore
{
    /// <inheritdoc />
    public async Task AddTrialsAsync(string sweepId, IReadOnlyList<TrialRecord> trials, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(sweepId);
        StateStoreErrors.ValidateTrials(sweepId, trials);
        ct.ThrowIfCancellationRequested();

        var keys = new RedisKey[2 + RedisKeys.IndexKeyCount + trials.Count];
        keys[0] = _keys.Sweep(sweepId);
        keys[1] = _keys.SweepTrials(sweepId);
        _keys.FillIndexKeys(sweepId, keys.AsSpan(2));
        var args = new RedisValue[1 + trials.Count * RedisScripts.FieldsPerTrial];
        args[0] = sweepId;
        FillTrials(trials, keys.AsSpan(2 + RedisKeys.IndexKeyCount), args.AsSpan(1));

        await EnsureSchemaAsync(ct).ConfigureAwait(false);
        var reply = (long)await RunAsync(_redis.GetDatabase().ScriptEvaluateAsync(RedisScripts.AddTrials, keys, args), ct).ConfigureAwait(false);
        if (reply < 0) StateStoreErrors.ThrowUnknownSweep(sweepId);
    }

    /// <inheritdoc />
    public async Task<TrialRecord?> GetTrialAsync(string trialId, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(trialId);
        await EnsureSchemaAsync(ct).ConfigureAwait(false);
        var json = await RunAsync(_redis.GetDatabase().HashGetAsync(_keys.Trial(trialId), JsonField), ct).ConfigureAwait(false);
        return json.IsNull ? null : Deserialize(json, StateJson.Default.TrialRecord);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<TrialRecord>> ListTrialsAsync(string sweepId, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(sweepId);
        await EnsureSchemaAsync(ct).ConfigureAwait(false);
        return await ListByScoreAsync(_keys.SweepTrials(sweepId), _keys.TrialKeyPrefix, "-inf", "+inf", -1, StateJson.Default.TrialRecord, ct).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<bool> TryUpdateTrialAsync(TrialRecord updated, long expectedVersion, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(updated);
        return (await TryUpdateTrialsAsync(updated.SweepId, [new TrialUpdate(updated, expectedVersion)], ct).ConfigureAwait(false))[0];
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<bool>> TryUpdateTrialsAsync(string sweepId, IReadOnlyList<TrialUpdate> updates, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(sweepId);
        StateStoreErrors.ValidateUpdates(sweepId, updates);
        ct.ThrowIfCancellationRequested();
        if (updates.Count == 0) return [];

        var keys = new RedisKey[RedisKeys.IndexKeyCount + updates.Count];
        _keys.FillIndexKeys(sweepId, keys);
        var args = new RedisValue[updates.Count * RedisScripts.FieldsPerUpdate];
        for (var i = 0; i < updates.Count; i++)
        {
            keys[RedisKeys.IndexKeyCount + i] = _keys.Trial(updates[i].Updated.Id);
            FillUpdate(updates[i], args.AsSpan(i * RedisScripts.FieldsPerUpdate, RedisScripts.FieldsPerUpdate));
        }
        await EnsureSchemaAsync(ct).ConfigureAwait(false);
        var reply = (RedisResult[])(await RunAsync(_redis.GetDatabase().ScriptEvaluateAsync(RedisScripts.UpdateTrials, keys, args), ct).ConfigureAwait(false))!;
        var applied = new bool[reply.Length];
        for (var i = 0; i < reply.Length; i++) applied[i] = (long)reply[i] == 1;
        return applied;
    }

    /// <inheritdoc />
    public async Task<MetricAppendResult> AppendMetricAsync(string trialId, long fencingToken, MetricPointRecord point, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(trialId);
        ArgumentNullException.ThrowIfNull(point);
        ct.ThrowIfCancellationRequested();
        await EnsureSchemaAsync(ct).ConfigureAwait(false);
        var reply = await RunAsync(_redis.GetDatabase().ScriptEvaluateAsync(
            RedisScripts.AppendMetric,
            [_keys.Trial(trialId), _keys.Metrics(trialId), _keys.MetricSteps(trialId)],
            [fencingToken, point.Step, JsonSerializer.SerializeToUtf8Bytes(point, StateJson.Default.MetricPointRecord)]), ct).ConfigureAwait(false);
        return (MetricAppendResult)(int)(long)reply;
    }

    /// <inheritdoc />
    public async Task<MetricAppendResult> AppendMetricAsync(string trialId, long fencingToken, MetricPointRecord point, TrialUpdate trial, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(trialId);
        ArgumentNullException.ThrowIfNull(point);
        StateStoreErrors.ValidateUpdate(trialId, trial);
        ct.ThrowIfCancellationRequested();

        var keys = new RedisKey[3 + RedisKeys.IndexKeyCount];
        keys[0] = _keys.Trial(trialId);
        keys[1] = _keys.Metrics(trialId);
        keys[2] = _keys.MetricSteps(trialId);
        _keys.FillIndexKeys(trial.Updated.SweepId, keys.AsSpan(3));
        var args = new RedisValue[3 + RedisScripts.FieldsPerUpdate];
        args[0] = fencingToken;
        args[1] = point.Step;
        args[2] = JsonSerializer.SerializeToUtf8Bytes(point, StateJson.Default.MetricPointRecord);
        FillUpdate(trial, args.AsSpan(3));

        await EnsureSchemaAsync(ct).ConfigureAwait(false);
        var reply = await RunAsync(_redis.GetDatabase().ScriptEvaluateAsync(RedisScripts.AppendMetricAndUpdateTrial, keys, args), ct).ConfigureAwait(false);
        return (MetricAppendResult)(int)(long)reply;
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<MetricPointRecord>> GetMetricsAsync(string trialId, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(trialId);
        await EnsureSchemaAsync(ct).ConfigureAwait(false);
        var reply = await RunAsync(_redis.GetDatabase().ScriptEvaluateAsync(
            RedisScripts.MetricsByStep, [_keys.MetricSteps(trialId), _keys.Metrics(trialId)]), ct).ConfigureAwait(false);
        return DeserializeAll(reply, StateJson.Default.MetricPointRecord);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<TrialRecord>> ListPendingTrialsAsync(string sweepId, int limit, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(sweepId);
        ArgumentOutOfRangeException.ThrowIfNegative(limit);
        if (limit == 0) return [];
        await EnsureSchemaAsync(ct).ConfigureAwait(false);
        return await ListByScoreAsync(_keys.SweepTrialsIn(sweepId, (int)TrialStatus.Pending), _keys.TrialKeyPrefix, "-inf", "+inf", limit,
            StateJson.Default.TrialRecord, ct).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<TrialRecord>> ListExpiredLeasesAsync(DateTimeOffset now, int limit, CancellationToken ct)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(limit);
        if (limit == 0) return [];
        await EnsureSchemaAsync(ct).ConfigureAwait(false);
        var before = "(" + now.ToUnixTimeMilliseconds().ToString(CultureInfo.InvariantCulture);
        return await ListByScoreAsync(_keys.Leases, _keys.TrialKeyPrefix, "-inf", before, limit, StateJson.Default.TrialRecord, ct).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<TrialCounts> CountTrialsAsync(string sweepId, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(sweepId);
        await EnsureSchemaAsync(ct).ConfigureAwait(false);
        var keys = new RedisKey[TrialIndexEntry.StateCount];
        for (var s = 0; s < keys.Length; s++) keys[s] = _keys.SweepTrialsIn(sweepId, s);
        var reply = (RedisResult[])(await RunAsync(_redis.GetDatabase().ScriptEvaluateAsync(RedisScripts.CountByState, keys), ct).ConfigureAwait(false))!;
        Span<long> counts = stackalloc long[TrialIndexEntry.StateCount];
        for (var s = 0; s < counts.Length; s++) counts[s] = (long)reply[s];
        return TrialCounts.From(counts);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<TrialRecord>> ListTrialsPageAsync(string sweepId, TrialPageQuery query, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(sweepId);
        ArgumentOutOfRangeException.ThrowIfNegative(query.Limit);
        if (query.Limit == 0) return [];
        await EnsureSchemaAsync(ct).ConfigureAwait(false);
        var index = query.State is { } state ? _keys.SweepTrialsIn(sweepId, (int)state) : _keys.SweepTrials(sweepId);
        var after = "(" + query.AfterIndex.ToString(CultureInfo.InvariantCulture);
        return await ListByScoreAsync(index, _keys.TrialKeyPrefix, after, "+inf", query.Limit, StateJson.Default.TrialRecord, ct).ConfigureAwait(false);
    }

    private static void FillUpdate(TrialUpdate update, Span<RedisValue> args)
    {
        var stored = update.Updated with { Version = update.ExpectedVersion + 1 };
        var index = TrialIndexEntry.Of(stored);
        args[0] = update.ExpectedVersion;
        args[1] = stored.Version;
        args[2] = stored.FencingToken;
        args[3] = JsonSerializer.SerializeToUtf8Bytes(stored, StateJson.Default.TrialRecord);
        args[4] = stored.Id;
        args[5] = stored.Index;
        args[6] = index.State;
        args[7] = Lease(index);
    }

    private async Task<IReadOnlyList<T>> ListByScoreAsync<T>(RedisKey index, byte[] memberPrefix, string min, string max, int limit,
        System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> info, CancellationToken ct)
    {
        var reply = await RunAsync(_redis.GetDatabase().ScriptEvaluateAsync(
            RedisScripts.ListByScore, [index], [memberPrefix, min, max, limit]), ct).ConfigureAwait(false);
        return DeserializeAll(reply, info);
    }
}

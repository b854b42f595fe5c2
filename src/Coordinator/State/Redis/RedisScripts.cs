namespace Orchestrator.Coordinator.State.Redis;

/// <summary>
/// The Lua scripts behind every multi-key or check-then-write operation of
/// <see cref="RedisStateStore"/>. A script runs atomically on the server, so a version or token
/// check and the write it guards can never be split by another client. The contracts (KEYS, ARGV,
/// reply) are documented in docs/state.md; keep the two in step.
/// <para>
/// Scripts first check everything and only then write, because Redis does not roll back the
/// writes of a script that fails half way. Loops issue one command per trial rather than
/// <c>unpack</c>ing thousands of arguments, which would overflow Lua's C stack.
/// </para>
/// </summary>
internal static class RedisScripts
{
    /// <summary>ARGV entries per trial in <see cref="CreateSweep"/> and <see cref="AddTrials"/>: id, index, version, token, json.</summary>
    public const int FieldsPerTrial = 5;

    /// <summary>
    /// KEYS: sweeps, sweeps:seq, sweep:{id}, sweep:{id}:trials, trial:{t1} … trial:{tn}.
    /// ARGV: sweep id, sweep version, sweep json, then per trial: id, index, version, token, json.
    /// Reply: 1 created; 0 the sweep exists; -i trial i (1-based) exists. Nothing is written unless 1.
    /// </summary>
    public const string CreateSweep = """
        if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
        local n = #KEYS - 4
        for i = 1, n do
          if redis.call('EXISTS', KEYS[4 + i]) == 1 then return -i end
        end
        local seq = redis.call('INCR', KEYS[2])
        redis.call('ZADD', KEYS[1], seq, ARGV[1])
        redis.call('HSET', KEYS[3], 'v', ARGV[2], 'json', ARGV[3])
        for i = 1, n do
          local a = 3 + (i - 1) * 5
          redis.call('HSET', KEYS[4 + i], 'v', ARGV[a + 3], 'token', ARGV[a + 4], 'sweep', ARGV[1], 'json', ARGV[a + 5])
          redis.call('ZADD', KEYS[4], ARGV[a + 2], ARGV[a + 1])
        end
        return 1
        """;

    /// <summary>
    /// KEYS: sweep:{id}, sweep:{id}:trials, trial:{t1} … trial:{tn}.
    /// ARGV: sweep id, then per trial: id, index, version, token, json.
    /// Reply: the number of trials added (existing ones are skipped); -1 the sweep does not exist.
    /// </summary>
    public const string AddTrials = """
        if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
        local added = 0
        for i = 1, #KEYS - 2 do
          if redis.call('EXISTS', KEYS[2 + i]) == 0 then
            local a = 1 + (i - 1) * 5
            redis.call('HSET', KEYS[2 + i], 'v', ARGV[a + 3], 'token', ARGV[a + 4], 'sweep', ARGV[1], 'json', ARGV[a + 5])
            redis.call('ZADD', KEYS[2], ARGV[a + 2], ARGV[a + 1])
            added = added + 1
          end
        end
        return added
        """;

    /// <summary>
    /// KEYS: sweep:{id}. ARGV: expected version, new version, json.
    /// Reply: 1 replaced; 0 the stored version differs or the sweep does not exist.
    /// </summary>
    public const string UpdateSweep = """
        if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then return 0 end
        redis.call('HSET', KEYS[1], 'v', ARGV[2], 'json', ARGV[3])
        return 1
        """;

    /// <summary>
    /// KEYS: trial:{id}. ARGV: expected version, new version, fencing token, json.
    /// Reply: 1 replaced; 0 the stored version differs or the trial does not exist.
    /// </summary>
    public const string UpdateTrial = """
        if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then return 0 end
        redis.call('HSET', KEYS[1], 'v', ARGV[2], 'token', ARGV[3], 'json', ARGV[4])
        return 1
        """;

    /// <summary>
    /// KEYS: trial:{id}, trial:{id}:metrics, trial:{id}:steps. ARGV: fencing token, step, json.
    /// Reply: 0 appended, 1 duplicate step, 2 stale token, 3 unknown trial
    /// (the values of <see cref="Domain.MetricAppendResult"/>).
    /// </summary>
    public const string AppendMetric = """
        local token = redis.call('HGET', KEYS[1], 'token')
        if not token then return 3 end
        if token ~= ARGV[1] then return 2 end
        if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3]) == 0 then return 1 end
        redis.call('ZADD', KEYS[3], ARGV[2], ARGV[2])
        return 0
        """;

    /// <summary>
    /// KEYS: an index ZSET (sweeps, or sweep:{id}:trials). ARGV: the key prefix of its members'
    /// hashes (…sweep: or …trial:). Reply: the members' json fields in index order (nil for a
    /// member whose hash is gone). One round trip and one consistent snapshot.
    /// </summary>
    public const string ListByIndex = """
        local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
        local out = {}
        for i, id in ipairs(ids) do out[i] = redis.call('HGET', ARGV[1] .. id, 'json') end
        return out
        """;

    /// <summary>
    /// KEYS: trial:{id}:steps, trial:{id}:metrics. Reply: the metric json values by step.
    /// </summary>
    public const string MetricsByStep = """
        local steps = redis.call('ZRANGE', KEYS[1], 0, -1)
        local out = {}
        for i, step in ipairs(steps) do out[i] = redis.call('HGET', KEYS[2], step) end
        return out
        """;
}

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
/// <para>
/// Every script that writes a trial also keeps its indexes: the trial's id in the per-state set
/// of its sweep (scored by index) and, while it runs, in the lease set (scored by expiry). The
/// index keys come as seven consecutive KEYS (states 0–5, then leases) starting at the position
/// each script names; the state and lease come as ARGV ('' for no lease).
/// </para>
/// </summary>
internal static class RedisScripts
{
    /// <summary>ARGV entries per trial in <see cref="CreateSweep"/> and <see cref="AddTrials"/>: id, index, version, token, json, state, lease.</summary>
    public const int FieldsPerTrial = 7;

    /// <summary>ARGV entries per update in <see cref="UpdateTrials"/>: expected version, new version, token, json, id, index, state, lease.</summary>
    public const int FieldsPerUpdate = 8;

    // Moves trial `id` (hash key tkey) to the per-state set of `state` and sets or clears its
    // lease; KEYS[base + s] is the set of state s, KEYS[base + 6] the lease set. Reads the old
    // state from the hash, so it must run before the hash's state field is overwritten.
    private const string Reindex = """
        local function reindex(tkey, id, idx, state, lease, base)
          local old = redis.call('HGET', tkey, 'state')
          if old ~= state then
            if old then redis.call('ZREM', KEYS[base + tonumber(old)], id) end
            redis.call('ZADD', KEYS[base + tonumber(state)], idx, id)
          end
          if lease == '' then redis.call('ZREM', KEYS[base + 6], id) else redis.call('ZADD', KEYS[base + 6], lease, id) end
        end

        """;

    /// <summary>
    /// KEYS: sweeps, sweeps:seq, sweep:{id}, sweep:{id}:trials, the seven index keys, trial:{t1} … trial:{tn}.
    /// ARGV: sweep id, sweep version, sweep json, then per trial: id, index, version, token, json, state, lease.
    /// Reply: 1 created; 0 the sweep exists; -i trial i (1-based) exists. Nothing is written unless 1.
    /// </summary>
    public const string CreateSweep = Reindex + """
        if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
        local n = #KEYS - 11
        for i = 1, n do
          if redis.call('EXISTS', KEYS[11 + i]) == 1 then return -i end
        end
        local seq = redis.call('INCR', KEYS[2])
        redis.call('ZADD', KEYS[1], seq, ARGV[1])
        redis.call('HSET', KEYS[3], 'v', ARGV[2], 'json', ARGV[3])
        for i = 1, n do
          local a = 3 + (i - 1) * 7
          reindex(KEYS[11 + i], ARGV[a + 1], ARGV[a + 2], ARGV[a + 6], ARGV[a + 7], 5)
          redis.call('HSET', KEYS[11 + i], 'v', ARGV[a + 3], 'token', ARGV[a + 4], 'sweep', ARGV[1], 'json', ARGV[a + 5], 'state', ARGV[a + 6])
          redis.call('ZADD', KEYS[4], ARGV[a + 2], ARGV[a + 1])
        end
        return 1
        """;

    /// <summary>
    /// KEYS: sweep:{id}, sweep:{id}:trials, the seven index keys, trial:{t1} … trial:{tn}.
    /// ARGV: sweep id, then per trial: id, index, version, token, json, state, lease.
    /// Reply: the number of trials added (existing ones are skipped); -1 the sweep does not exist.
    /// </summary>
    public const string AddTrials = Reindex + """
        if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
        local added = 0
        for i = 1, #KEYS - 9 do
          if redis.call('EXISTS', KEYS[9 + i]) == 0 then
            local a = 1 + (i - 1) * 7
            reindex(KEYS[9 + i], ARGV[a + 1], ARGV[a + 2], ARGV[a + 6], ARGV[a + 7], 3)
            redis.call('HSET', KEYS[9 + i], 'v', ARGV[a + 3], 'token', ARGV[a + 4], 'sweep', ARGV[1], 'json', ARGV[a + 5], 'state', ARGV[a + 6])
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
    /// KEYS: the seven index keys of one sweep, then trial:{t1} … trial:{tn} of that sweep.
    /// ARGV: per trial: expected version, new version, token, json, id, index, state, lease.
    /// Reply: per trial 1 replaced, 0 the stored version differs or the trial does not exist.
    /// </summary>
    public const string UpdateTrials = Reindex + """
        local out = {}
        for i = 1, #KEYS - 7 do
          local a = (i - 1) * 8
          local k = KEYS[7 + i]
          if redis.call('HGET', k, 'v') == ARGV[a + 1] then
            reindex(k, ARGV[a + 5], ARGV[a + 6], ARGV[a + 7], ARGV[a + 8], 1)
            redis.call('HSET', k, 'v', ARGV[a + 2], 'token', ARGV[a + 3], 'json', ARGV[a + 4], 'state', ARGV[a + 7])
            out[i] = 1
          else
            out[i] = 0
          end
        end
        return out
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
    /// KEYS: trial:{id}, trial:{id}:metrics, trial:{id}:steps, the seven index keys of its sweep.
    /// ARGV: fencing token, step, point json, then the trial's expected version, new version,
    /// token, json, id, index, state, lease.
    /// Reply: as <see cref="AppendMetric"/>, or 4 the trial's version differs; nothing is written unless 0.
    /// </summary>
    public const string AppendMetricAndUpdateTrial = Reindex + """
        local token = redis.call('HGET', KEYS[1], 'token')
        if not token then return 3 end
        if token ~= ARGV[1] then return 2 end
        if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then return 1 end
        if redis.call('HGET', KEYS[1], 'v') ~= ARGV[4] then return 4 end
        redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
        redis.call('ZADD', KEYS[3], ARGV[2], ARGV[2])
        reindex(KEYS[1], ARGV[8], ARGV[9], ARGV[10], ARGV[11], 4)
        redis.call('HSET', KEYS[1], 'v', ARGV[5], 'token', ARGV[6], 'json', ARGV[7], 'state', ARGV[10])
        return 0
        """;

    /// <summary>
    /// KEYS: trial:{id}, trial:{id}:log, trial:{id}:log:seq. ARGV: fencing token, lines to keep,
    /// then one TrialLogLine json per line. Reply: a <see cref="Domain.LogAppendResult"/>: 0 stored,
    /// 1 stale token, 2 unknown trial.
    /// Each line is stored as "{seq} {json}", so equal lines stay distinct members.
    /// </summary>
    public const string AppendTrialLog = """
        local token = redis.call('HGET', KEYS[1], 'token')
        if not token then return 2 end
        if token ~= ARGV[1] then return 1 end
        local n = #ARGV - 2
        local last = redis.call('INCRBY', KEYS[3], n)
        for i = 1, n do
          local seq = last - n + i
          redis.call('ZADD', KEYS[2], seq, seq .. ' ' .. ARGV[2 + i])
        end
        redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[2]) + 1))
        return 0
        """;

    /// <summary>
    /// KEYS: an index ZSET (sweeps, sweep:{id}:trials, a per-state set, leases). ARGV: the key
    /// prefix of its members' hashes (…sweep: or …trial:), the lowest and highest score (ZRANGE
    /// BYSCORE syntax: -inf, (5, +inf), and the most members to return (-1: all). Reply: the
    /// members' json fields in score order (nil for a member whose hash is gone). One round trip
    /// and one consistent snapshot.
    /// </summary>
    public const string ListByScore = """
        local ids = redis.call('ZRANGE', KEYS[1], ARGV[2], ARGV[3], 'BYSCORE', 'LIMIT', 0, ARGV[4])
        local out = {}
        for i, id in ipairs(ids) do out[i] = redis.call('HGET', ARGV[1] .. id, 'json') end
        return out
        """;

    /// <summary>KEYS: the six per-state sets of a sweep. Reply: their sizes, state 0 first.</summary>
    public const string CountByState = """
        local out = {}
        for i = 1, #KEYS do out[i] = redis.call('ZCARD', KEYS[i]) end
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

    /// <summary>
    /// Builds the indexes of trials written before they existed (layout version 1).
    /// KEYS: the seven index keys of one sweep, then trial:{t1} … trial:{tn} of that sweep.
    /// ARGV: per trial: id, index, state, lease. Reply: the number of trials indexed.
    /// </summary>
    public const string IndexTrials = Reindex + """
        local n = 0
        for i = 1, #KEYS - 7 do
          local a = (i - 1) * 4
          if redis.call('EXISTS', KEYS[7 + i]) == 1 then
            reindex(KEYS[7 + i], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], 1)
            redis.call('HSET', KEYS[7 + i], 'state', ARGV[a + 3])
            n = n + 1
          end
        end
        return n
        """;
}

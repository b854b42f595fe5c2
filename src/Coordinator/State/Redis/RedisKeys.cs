using System.Text;
using StackExchange.Redis;

namespace Orchestrator.Coordinator.State.Redis;

/// <summary>
/// The Redis key layout, in one place (docs/state.md describes it). Every key starts with the
/// store's prefix so several coordinators or test runs can share one Redis.
/// <code>
/// {p}sweeps                   ZSET   sweep id, scored by creation sequence
/// {p}sweeps:seq               STRING creation counter (INCR)
/// {p}sweep:{id}               HASH   v = version, json = SweepRecord
/// {p}sweep:{id}:trials        ZSET   trial id, scored by index
/// {p}sweep:{id}:trials:{s}    ZSET   trial id, scored by index, for the trials in state s (0 pending … 4 cancelled)
/// {p}trial:{id}               HASH   v = version, token = fencing token, sweep = sweep id, state = s, json = TrialRecord
/// {p}leases                   ZSET   trial id of every running trial, scored by lease expiry (Unix ms)
/// {p}schema                   STRING layout version (2: the state and lease indexes exist)
/// {p}trial:{id}:metrics       HASH   step → MetricPointRecord json
/// {p}trial:{id}:steps         ZSET   step, scored by step (the order of the metrics hash)
/// {p}trial:{id}:log           ZSET   "{seq} {TrialLogLine json}", scored by seq (the last lines kept)
/// {p}trial:{id}:log:seq       STRING the trial's last log seq (INCRBY)
/// {p}workers                  HASH   worker id → WorkerRecord json
/// </code>
/// </summary>
internal sealed class RedisKeys
{
    private static ReadOnlySpan<byte> SweepsName => "sweeps"u8;
    private static ReadOnlySpan<byte> SweepSeqName => "sweeps:seq"u8;
    private static ReadOnlySpan<byte> WorkersName => "workers"u8;
    private static ReadOnlySpan<byte> LeasesName => "leases"u8;
    private static ReadOnlySpan<byte> SchemaName => "schema"u8;
    private static ReadOnlySpan<byte> SweepPart => "sweep:"u8;
    private static ReadOnlySpan<byte> TrialPart => "trial:"u8;
    private static ReadOnlySpan<byte> TrialsSuffix => ":trials"u8;
    private static ReadOnlySpan<byte> MetricsSuffix => ":metrics"u8;
    private static ReadOnlySpan<byte> StepsSuffix => ":steps"u8;
    private static ReadOnlySpan<byte> LogSuffix => ":log"u8;
    private static ReadOnlySpan<byte> LogSeqSuffix => ":log:seq"u8;

    private readonly byte[] _prefix;

    public RedisKeys(string prefix)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        _prefix = Encoding.UTF8.GetBytes(prefix);
        Sweeps = Build(SweepsName, null, default);
        SweepSeq = Build(SweepSeqName, null, default);
        Workers = Build(WorkersName, null, default);
        Leases = Build(LeasesName, null, default);
        Schema = Build(SchemaName, null, default);
        // Read scripts build sweep and trial keys from ids they find in an index, so they are
        // handed these prefixes as arguments rather than knowing the layout themselves.
        SweepKeyPrefix = Build(SweepPart, null, default);
        TrialKeyPrefix = Build(TrialPart, null, default);
    }

    public RedisKey Sweeps { get; }
    public RedisKey SweepSeq { get; }
    public RedisKey Workers { get; }
    public RedisKey Leases { get; }
    public RedisKey Schema { get; }
    public byte[] SweepKeyPrefix { get; }
    public byte[] TrialKeyPrefix { get; }

    public RedisKey Sweep(string sweepId) => Build(SweepPart, sweepId, default);
    public RedisKey SweepTrials(string sweepId) => Build(SweepPart, sweepId, TrialsSuffix);

    /// <summary>The sweep's trials in state <paramref name="state"/> (a <see cref="Domain.TrialStatus"/> value).</summary>
    public RedisKey SweepTrialsIn(string sweepId, int state)
    {
        Span<byte> suffix = stackalloc byte[TrialsSuffix.Length + 2];
        TrialsSuffix.CopyTo(suffix);
        suffix[^2] = (byte)':';
        suffix[^1] = (byte)('0' + state);
        return Build(SweepPart, sweepId, suffix);
    }

    /// <summary>
    /// The keys the index-keeping scripts take after their own: the sweep's six per-state sets
    /// (state 0 first) and the lease set.
    /// </summary>
    public void FillIndexKeys(string sweepId, Span<RedisKey> keys)
    {
        for (var s = 0; s < TrialIndexEntry.StateCount; s++) keys[s] = SweepTrialsIn(sweepId, s);
        keys[TrialIndexEntry.StateCount] = Leases;
    }

    /// <summary>How many keys <see cref="FillIndexKeys"/> writes.</summary>
    public const int IndexKeyCount = TrialIndexEntry.StateCount + 1;
    public RedisKey Trial(string trialId) => Build(TrialPart, trialId, default);
    public RedisKey Metrics(string trialId) => Build(TrialPart, trialId, MetricsSuffix);
    public RedisKey MetricSteps(string trialId) => Build(TrialPart, trialId, StepsSuffix);
    public RedisKey TrialLog(string trialId) => Build(TrialPart, trialId, LogSuffix);
    public RedisKey TrialLogSeq(string trialId) => Build(TrialPart, trialId, LogSeqSuffix);

    // One exact-size array per key: the prefix and the fixed parts are copied as bytes and the id
    // is encoded straight into place, with no intermediate strings.
    private byte[] Build(ReadOnlySpan<byte> part, string? id, ReadOnlySpan<byte> suffix)
    {
        var idBytes = id is null ? 0 : Encoding.UTF8.GetByteCount(id);
        var key = new byte[_prefix.Length + part.Length + idBytes + suffix.Length];
        var span = key.AsSpan();
        _prefix.CopyTo(span);
        span = span[_prefix.Length..];
        part.CopyTo(span);
        span = span[part.Length..];
        if (id is not null) span = span[Encoding.UTF8.GetBytes(id, span)..];
        suffix.CopyTo(span);
        return key;
    }
}

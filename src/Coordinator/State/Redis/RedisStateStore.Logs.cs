using System.Buffers.Text;
using System.Text.Json;
using Orchestrator.Coordinator.Domain;
using StackExchange.Redis;

namespace Orchestrator.Coordinator.State.Redis;

/// <summary>Trial logs: a sorted set per trial, scored by seq and trimmed to the last lines in the same script.</summary>
public sealed partial class RedisStateStore
{
    /// <inheritdoc />
    public async Task<LogAppendResult> AppendTrialLogAsync(string trialId, long fencingToken, IReadOnlyList<TrialLogLine> lines, int keep, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(trialId);
        ArgumentNullException.ThrowIfNull(lines);
        ArgumentOutOfRangeException.ThrowIfLessThan(keep, 1);
        ct.ThrowIfCancellationRequested();
        var args = new RedisValue[2 + lines.Count];
        args[0] = fencingToken;
        args[1] = keep;
        for (var i = 0; i < lines.Count; i++)
            args[2 + i] = JsonSerializer.SerializeToUtf8Bytes(lines[i] with { Seq = 0 }, StateJson.Default.TrialLogLine);
        await EnsureSchemaAsync(ct).ConfigureAwait(false);
        var reply = await RunAsync(_redis.GetDatabase().ScriptEvaluateAsync(
            RedisScripts.AppendTrialLog, [_keys.Trial(trialId), _keys.TrialLog(trialId), _keys.TrialLogSeq(trialId)], args), ct).ConfigureAwait(false);
        return (LogAppendResult)(int)(long)reply;
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<TrialLogLine>> GetTrialLogAsync(string trialId, long afterSeq, int limit, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(trialId);
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        await EnsureSchemaAsync(ct).ConfigureAwait(false);
        var members = await RunAsync(_redis.GetDatabase().SortedSetRangeByScoreAsync(
            _keys.TrialLog(trialId), afterSeq, double.PositiveInfinity, Exclude.Start, Order.Ascending, 0, limit), ct).ConfigureAwait(false);
        var lines = new List<TrialLogLine>(members.Length);
        foreach (var member in members)
        {
            // "{seq} {json}": the seq is the member's own, the json holds the rest.
            var bytes = (ReadOnlySpan<byte>)(byte[])member!;
            var space = bytes.IndexOf((byte)' ');
            if (space <= 0 || !Utf8Parser.TryParse(bytes[..space], out long seq, out _))
                throw new InvalidDataException($"Redis holds a malformed log line of trial {trialId}.");
            var line = JsonSerializer.Deserialize(bytes[(space + 1)..], StateJson.Default.TrialLogLine)
                       ?? throw new InvalidDataException($"Redis holds a null log line of trial {trialId}.");
            lines.Add(line with { Seq = seq });
        }
        return lines;
    }
}

using System.Globalization;
using Orchestrator.Coordinator.Domain;
using StackExchange.Redis;

namespace Orchestrator.Coordinator.State.Redis;

// The key layout's version, and the one-time indexing of data written by layout 1 (before the
// per-state and lease indexes existed), so that an upgraded coordinator finds every trial.
public sealed partial class RedisStateStore
{
    /// <summary>The layout this build writes (see <see cref="RedisKeys"/>).</summary>
    public const int SchemaVersion = 2;

    // Trials indexed per script call during an upgrade (keeps each call short for other clients).
    private const int UpgradeBatch = 1000;

    private readonly SemaphoreSlim _schemaGate = new(1, 1);
    private volatile bool _schemaReady;

    /// <summary>
    /// Checks the layout version once per store (the first call that reaches Redis), upgrading
    /// older data in place. Refuses data written by a newer layout rather than misreading it.
    /// </summary>
    private async ValueTask EnsureSchemaAsync(CancellationToken ct)
    {
        if (_schemaReady) return;
        await _schemaGate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            if (_schemaReady) return;
            var db = _redis.GetDatabase();
            var stored = await RunAsync(db.StringGetAsync(_keys.Schema), ct).ConfigureAwait(false);
            var version = stored.IsNull ? 1 : int.Parse(stored.ToString(), CultureInfo.InvariantCulture);
            if (version > SchemaVersion)
                throw new InvalidDataException($"Redis keys under '{KeyPrefix}' have layout {version}; this build reads up to {SchemaVersion}.");
            if (version < SchemaVersion)
            {
                await IndexExistingTrialsAsync(ct).ConfigureAwait(false);
                await RunAsync(db.StringSetAsync(_keys.Schema, SchemaVersion), ct).ConfigureAwait(false);
            }
            _schemaReady = true;
        }
        finally
        {
            _schemaGate.Release();
        }
    }

    // Idempotent: a crash half way leaves the version at 1 and the next start indexes again.
    private async Task IndexExistingTrialsAsync(CancellationToken ct)
    {
        var sweeps = await ListByScoreAsync(_keys.Sweeps, _keys.SweepKeyPrefix, "-inf", "+inf", -1, StateJson.Default.SweepRecord, ct).ConfigureAwait(false);
        foreach (var sweep in sweeps)
        {
            var trials = await ListByScoreAsync(_keys.SweepTrials(sweep.Id), _keys.TrialKeyPrefix, "-inf", "+inf", -1, StateJson.Default.TrialRecord, ct).ConfigureAwait(false);
            foreach (var batch in trials.Chunk(UpgradeBatch))
            {
                var keys = new RedisKey[RedisKeys.IndexKeyCount + batch.Length];
                _keys.FillIndexKeys(sweep.Id, keys);
                var args = new RedisValue[batch.Length * 4];
                for (var i = 0; i < batch.Length; i++)
                {
                    var index = TrialIndexEntry.Of(batch[i]);
                    keys[RedisKeys.IndexKeyCount + i] = _keys.Trial(batch[i].Id);
                    args[i * 4] = batch[i].Id;
                    args[i * 4 + 1] = batch[i].Index;
                    args[i * 4 + 2] = index.State;
                    args[i * 4 + 3] = Lease(index);
                }
                await RunAsync(_redis.GetDatabase().ScriptEvaluateAsync(RedisScripts.IndexTrials, keys, args), ct).ConfigureAwait(false);
            }
        }
    }
}

using System.Text.Json;
using Microsoft.Data.Sqlite;
using Orchestrator.Coordinator.Domain;

namespace Orchestrator.Coordinator.State.Sqlite;

// Trials, their metrics and the indexed queries (state, lease expiry, counts kept by triggers).
public sealed partial class SqliteStateStore
{
    private const string UpdateTrialSql = """
        UPDATE trials SET version = @new, fencing_token = @token, json = @json, state = @state, lease_ms = @lease
        WHERE id = @id AND version = @expected;
        """;

    /// <inheritdoc />
    public Task AddTrialsAsync(string sweepId, IReadOnlyList<TrialRecord> trials, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(sweepId);
        StateStoreErrors.ValidateTrials(sweepId, trials);
        return WriteAsync(async (db, token) =>
        {
            using var tx = db.BeginTransaction();
            using (var exists = Command(db, tx, "SELECT 1 FROM sweeps WHERE id = @id;"))
            {
                exists.Parameters.AddWithValue("@id", sweepId);
                if (await exists.ExecuteScalarAsync(token).ConfigureAwait(false) is null) StateStoreErrors.ThrowUnknownSweep(sweepId);
            }
            await InsertTrialsAsync(db, tx, trials, token).ConfigureAwait(false);
            tx.Commit();
            return true;
        }, ct);
    }

    /// <inheritdoc />
    public Task<TrialRecord?> GetTrialAsync(string trialId, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(trialId);
        return ReadOneAsync("SELECT json FROM trials WHERE id = @id;", trialId, StateJson.Default.TrialRecord, ct);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<TrialRecord>> ListTrialsAsync(string sweepId, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(sweepId);
        return ReadManyAsync("SELECT json FROM trials WHERE sweep_id = @id ORDER BY idx, id;", sweepId, StateJson.Default.TrialRecord, ct);
    }

    /// <inheritdoc />
    public async Task<bool> TryUpdateTrialAsync(TrialRecord updated, long expectedVersion, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(updated);
        return (await TryUpdateTrialsAsync(updated.SweepId, [new TrialUpdate(updated, expectedVersion)], ct).ConfigureAwait(false))[0];
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<bool>> TryUpdateTrialsAsync(string sweepId, IReadOnlyList<TrialUpdate> updates, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(sweepId);
        StateStoreErrors.ValidateUpdates(sweepId, updates);
        if (updates.Count == 0) return Task.FromResult<IReadOnlyList<bool>>([]);
        return WriteAsync(async (db, token) =>
        {
            // One transaction (one fsync) for the whole batch; each row is still its own compare-and-set.
            using var tx = updates.Count > 1 ? db.BeginTransaction() : null;
            using var update = Command(db, tx, UpdateTrialSql);
            var bind = BindUpdate(update);
            if (updates.Count > 1) update.Prepare();
            var applied = new bool[updates.Count];
            for (var i = 0; i < updates.Count; i++)
            {
                bind(updates[i]);
                applied[i] = await update.ExecuteNonQueryAsync(token).ConfigureAwait(false) == 1;
            }
            tx?.Commit();
            return (IReadOnlyList<bool>)applied;
        }, ct);
    }

    /// <inheritdoc />
    public Task<MetricAppendResult> AppendMetricAsync(string trialId, long fencingToken, MetricPointRecord point, CancellationToken ct) =>
        AppendMetricCoreAsync(trialId, fencingToken, point, null, ct);

    /// <inheritdoc />
    public Task<MetricAppendResult> AppendMetricAsync(string trialId, long fencingToken, MetricPointRecord point, TrialUpdate trial, CancellationToken ct)
    {
        StateStoreErrors.ValidateUpdate(trialId, trial);
        return AppendMetricCoreAsync(trialId, fencingToken, point, trial, ct);
    }

    private Task<MetricAppendResult> AppendMetricCoreAsync(string trialId, long fencingToken, MetricPointRecord point, TrialUpdate? trial, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(trialId);
        ArgumentNullException.ThrowIfNull(point);
        var json = JsonSerializer.Serialize(point, StateJson.Default.MetricPointRecord);
        return WriteAsync(async (db, token) =>
        {
            using var tx = db.BeginTransaction();
            using (var current = Command(db, tx, "SELECT fencing_token FROM trials WHERE id = @id;"))
            {
                current.Parameters.AddWithValue("@id", trialId);
                var stored = await current.ExecuteScalarAsync(token).ConfigureAwait(false);
                if (stored is null) return MetricAppendResult.UnknownTrial;
                if ((long)stored != fencingToken) return MetricAppendResult.StaleToken;
            }
            using (var insert = Command(db, tx, "INSERT INTO metrics (trial_id, step, json) VALUES (@id, @step, @json) ON CONFLICT DO NOTHING;"))
            {
                insert.Parameters.AddWithValue("@id", trialId);
                insert.Parameters.AddWithValue("@step", point.Step);
                insert.Parameters.AddWithValue("@json", json);
                if (await insert.ExecuteNonQueryAsync(token).ConfigureAwait(false) == 0) return MetricAppendResult.Duplicate;
            }
            if (trial is { } change)
            {
                using var update = Command(db, tx, UpdateTrialSql);
                BindUpdate(update)(change);
                // Not committed: the point goes with the transaction.
                if (await update.ExecuteNonQueryAsync(token).ConfigureAwait(false) == 0) return MetricAppendResult.Conflict;
            }
            tx.Commit();
            return MetricAppendResult.Appended;
        }, ct);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<MetricPointRecord>> GetMetricsAsync(string trialId, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(trialId);
        return ReadManyAsync("SELECT json FROM metrics WHERE trial_id = @id ORDER BY step;", trialId, StateJson.Default.MetricPointRecord, ct);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<TrialRecord>> ListPendingTrialsAsync(string sweepId, int limit, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(sweepId);
        ArgumentOutOfRangeException.ThrowIfNegative(limit);
        return ReadManyAsync("SELECT json FROM trials WHERE sweep_id = @id AND state = 0 ORDER BY idx LIMIT @limit;", q =>
        {
            q.Parameters.AddWithValue("@id", sweepId);
            q.Parameters.AddWithValue("@limit", limit);
        }, StateJson.Default.TrialRecord, ct);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<TrialRecord>> ListExpiredLeasesAsync(DateTimeOffset now, int limit, CancellationToken ct)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(limit);
        return ReadManyAsync("SELECT json FROM trials WHERE lease_ms IS NOT NULL AND lease_ms < @now ORDER BY lease_ms LIMIT @limit;", q =>
        {
            q.Parameters.AddWithValue("@now", now.ToUnixTimeMilliseconds());
            q.Parameters.AddWithValue("@limit", limit);
        }, StateJson.Default.TrialRecord, ct);
    }

    /// <inheritdoc />
    public Task<TrialCounts> CountTrialsAsync(string sweepId, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(sweepId);
        return ReadAsync("SELECT state, n FROM trial_counts WHERE sweep_id = @id;", q => q.Parameters.AddWithValue("@id", sweepId), async (reader, token) =>
        {
            var counts = new long[TrialIndexEntry.StateCount];
            while (await reader.ReadAsync(token).ConfigureAwait(false)) counts[reader.GetInt32(0)] = reader.GetInt64(1);
            return TrialCounts.From(counts);
        }, ct);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<TrialRecord>> ListTrialsPageAsync(string sweepId, TrialPageQuery query, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(sweepId);
        ArgumentOutOfRangeException.ThrowIfNegative(query.Limit);
        var sql = query.State is null
            ? "SELECT json FROM trials WHERE sweep_id = @id AND idx > @after ORDER BY idx, id LIMIT @limit;"
            : "SELECT json FROM trials WHERE sweep_id = @id AND state = @state AND idx > @after ORDER BY idx, id LIMIT @limit;";
        return ReadManyAsync(sql, q =>
        {
            q.Parameters.AddWithValue("@id", sweepId);
            q.Parameters.AddWithValue("@after", query.AfterIndex);
            q.Parameters.AddWithValue("@limit", query.Limit);
            if (query.State is { } state) q.Parameters.AddWithValue("@state", (int)state);
        }, StateJson.Default.TrialRecord, ct);
    }

    // Parameters of UpdateTrialSql, set from one update at a time (the command is reused for a batch).
    private static Action<TrialUpdate> BindUpdate(SqliteCommand update)
    {
        var id = update.Parameters.Add("@id", SqliteType.Text);
        var expected = update.Parameters.Add("@expected", SqliteType.Integer);
        var version = update.Parameters.Add("@new", SqliteType.Integer);
        var token = update.Parameters.Add("@token", SqliteType.Integer);
        var json = update.Parameters.Add("@json", SqliteType.Text);
        var state = update.Parameters.Add("@state", SqliteType.Integer);
        var lease = update.Parameters.Add("@lease", SqliteType.Integer);
        return change =>
        {
            var stored = change.Updated with { Version = change.ExpectedVersion + 1 };
            var index = TrialIndexEntry.Of(stored);
            id.Value = stored.Id;
            expected.Value = change.ExpectedVersion;
            version.Value = stored.Version;
            token.Value = stored.FencingToken;
            json.Value = JsonSerializer.Serialize(stored, StateJson.Default.TrialRecord);
            state.Value = index.State;
            lease.Value = index.LeaseExpiresMs is { } ms ? ms : DBNull.Value;
        };
    }

    private readonly record struct InsertedTrials(int Count, string? FirstSkipped);

    // One prepared statement reused for every row: 10,000 trials insert in one transaction
    // without re-parsing the SQL.
    private static async Task<InsertedTrials> InsertTrialsAsync(SqliteConnection db, SqliteTransaction tx, IReadOnlyList<TrialRecord> trials, CancellationToken ct)
    {
        using var insert = Command(db, tx, """
            INSERT INTO trials (id, sweep_id, idx, version, fencing_token, json, state, lease_ms)
            VALUES (@id, @sweep, @idx, @version, @token, @json, @state, @lease) ON CONFLICT (id) DO NOTHING;
            """);
        var id = insert.Parameters.Add("@id", SqliteType.Text);
        var sweep = insert.Parameters.Add("@sweep", SqliteType.Text);
        var idx = insert.Parameters.Add("@idx", SqliteType.Integer);
        var version = insert.Parameters.Add("@version", SqliteType.Integer);
        var token = insert.Parameters.Add("@token", SqliteType.Integer);
        var json = insert.Parameters.Add("@json", SqliteType.Text);
        var state = insert.Parameters.Add("@state", SqliteType.Integer);
        var lease = insert.Parameters.Add("@lease", SqliteType.Integer);
        insert.Prepare();
        var count = 0;
        string? firstSkipped = null;
        foreach (var trial in trials)
        {
            var index = TrialIndexEntry.Of(trial);
            id.Value = trial.Id;
            sweep.Value = trial.SweepId;
            idx.Value = trial.Index;
            version.Value = trial.Version;
            token.Value = trial.FencingToken;
            json.Value = JsonSerializer.Serialize(trial, StateJson.Default.TrialRecord);
            state.Value = index.State;
            lease.Value = index.LeaseExpiresMs is { } ms ? ms : DBNull.Value;
            if (await insert.ExecuteNonQueryAsync(ct).ConfigureAwait(false) == 1) count++;
            else firstSkipped ??= trial.Id;
        }
        return new InsertedTrials(count, firstSkipped);
    }
}

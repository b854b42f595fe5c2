using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Microsoft.Data.Sqlite;
using Orchestrator.Coordinator.Domain;

namespace Orchestrator.Coordinator.State.Sqlite;

/// <summary>
/// <see cref="IStateStore"/> in one SQLite file under a state folder, for <c>orch local</c>: no
/// server, and everything survives a restart of the process. The file runs in WAL mode so
/// readers never wait for the writer; writes go one at a time through one connection (SQLite
/// allows a single writer anyway, and queuing in-process beats spinning on SQLITE_BUSY).
/// Compare-and-set is <c>UPDATE … WHERE version = @expected</c>; sweep creation and metric
/// appends are transactions.
/// </summary>
public sealed class SqliteStateStore : IStateStore, IAsyncDisposable, IDisposable
{
    /// <summary>The database file's name inside the state folder.</summary>
    public const string FileName = "state.db";

    private const string StoreName = "SQLite";
    private const int SqliteBusy = 5, SqliteLocked = 6, SqliteIoErr = 10, SqliteFull = 13, SqliteCantOpen = 14;

    private readonly string _connectionString;
    // The single writer connection. For an in-memory database it also keeps the database alive
    // and serves reads, since a shared-cache memory database would answer concurrent readers
    // with SQLITE_LOCKED instead of WAL snapshots.
    private readonly SqliteConnection _writer;
    private readonly SemaphoreSlim _writeGate = new(1, 1);
    private readonly bool _inMemory;

    private SqliteStateStore(string connectionString, SqliteConnection writer, bool inMemory)
    {
        _connectionString = connectionString;
        _writer = writer;
        _inMemory = inMemory;
    }

    /// <summary>The database file, or null for an in-memory store.</summary>
    public string? DatabasePath { get; private init; }

    /// <summary>
    /// Opens (creating if needed) <c>state.db</c> in <paramref name="stateDirectory"/>, which is
    /// created if missing.
    /// </summary>
    public static async Task<SqliteStateStore> OpenAsync(string stateDirectory, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(stateDirectory);
        Directory.CreateDirectory(stateDirectory);
        var path = Path.GetFullPath(Path.Combine(stateDirectory, FileName));
        var connectionString = new SqliteConnectionStringBuilder
        {
            DataSource = path,
            Mode = SqliteOpenMode.ReadWriteCreate,
            Pooling = true,
            // Also the busy timeout: another process holding the write lock is waited for, not failed.
            DefaultTimeout = 30,
        }.ToString();
        var writer = await OpenCoreAsync(connectionString, inMemory: false, ct).ConfigureAwait(false);
        return new SqliteStateStore(connectionString, writer, inMemory: false) { DatabasePath = path };
    }

    /// <summary>
    /// Opens a private in-memory database (tests, throw-away runs). It lives until the store is
    /// disposed.
    /// </summary>
    public static async Task<SqliteStateStore> OpenInMemoryAsync(CancellationToken ct)
    {
        var connectionString = new SqliteConnectionStringBuilder
        {
            DataSource = "orch-" + Guid.NewGuid().ToString("N"),
            Mode = SqliteOpenMode.Memory,
            Cache = SqliteCacheMode.Shared,
        }.ToString();
        var writer = await OpenCoreAsync(connectionString, inMemory: true, ct).ConfigureAwait(false);
        return new SqliteStateStore(connectionString, writer, inMemory: true);
    }

    private static async Task<SqliteConnection> OpenCoreAsync(string connectionString, bool inMemory, CancellationToken ct)
    {
        var connection = new SqliteConnection(connectionString);
        try
        {
            await connection.OpenAsync(ct).ConfigureAwait(false);
            if (!inMemory)
            {
                // WAL: readers see the last commit while a write is in progress. synchronous=FULL:
                // a commit is on disk when it returns, so even a power cut loses nothing that
                // was acknowledged (the coordinator told a worker "stored").
                await ExecuteAsync(connection, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;", ct).ConfigureAwait(false);
            }
            await ExecuteAsync(connection, "PRAGMA foreign_keys = ON;", ct).ConfigureAwait(false);
            using (var check = connection.CreateCommand())
            {
                check.CommandText = "PRAGMA user_version;";
                var version = Convert.ToInt32(await check.ExecuteScalarAsync(ct).ConfigureAwait(false), System.Globalization.CultureInfo.InvariantCulture);
                if (version > SqliteSchema.Version)
                    throw new InvalidDataException($"{connection.DataSource} has state schema {version}; this build reads up to {SqliteSchema.Version}.");
            }
            await ExecuteAsync(connection, SqliteSchema.Create + $"PRAGMA user_version = {SqliteSchema.Version};", ct).ConfigureAwait(false);
            return connection;
        }
        catch (SqliteException e) when (IsUnavailable(e))
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw StateStoreErrors.Unavailable(StoreName, e);
        }
        catch
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <inheritdoc />
    public Task CreateSweepAsync(SweepRecord sweep, IReadOnlyList<TrialRecord> trials, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(sweep);
        StateStoreErrors.ValidateTrials(sweep.Id, trials);
        return WriteAsync(async (db, token) =>
        {
            using var tx = db.BeginTransaction();
            using (var insert = Command(db, tx, "INSERT INTO sweeps (id, version, json) VALUES (@id, @version, @json) ON CONFLICT (id) DO NOTHING;"))
            {
                insert.Parameters.AddWithValue("@id", sweep.Id);
                insert.Parameters.AddWithValue("@version", sweep.Version);
                insert.Parameters.AddWithValue("@json", JsonSerializer.Serialize(sweep, StateJson.Default.SweepRecord));
                if (await insert.ExecuteNonQueryAsync(token).ConfigureAwait(false) == 0) StateStoreErrors.ThrowSweepExists(sweep.Id);
            }
            var inserted = await InsertTrialsAsync(db, tx, trials, token).ConfigureAwait(false);
            if (inserted.FirstSkipped is { } existing) StateStoreErrors.ThrowTrialExists(existing);
            tx.Commit();
            return true;
        }, ct);
    }

    /// <inheritdoc />
    public Task<SweepRecord?> GetSweepAsync(string sweepId, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(sweepId);
        return ReadOneAsync("SELECT json FROM sweeps WHERE id = @id;", sweepId, StateJson.Default.SweepRecord, ct);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<SweepRecord>> ListSweepsAsync(CancellationToken ct) =>
        ReadManyAsync("SELECT json FROM sweeps ORDER BY seq;", null, StateJson.Default.SweepRecord, ct);

    /// <inheritdoc />
    public Task<bool> TryUpdateSweepAsync(SweepRecord updated, long expectedVersion, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(updated);
        var stored = updated with { Version = expectedVersion + 1 };
        return WriteAsync(async (db, token) =>
        {
            using var update = Command(db, null, "UPDATE sweeps SET version = @new, json = @json WHERE id = @id AND version = @expected;");
            update.Parameters.AddWithValue("@id", stored.Id);
            update.Parameters.AddWithValue("@expected", expectedVersion);
            update.Parameters.AddWithValue("@new", stored.Version);
            update.Parameters.AddWithValue("@json", JsonSerializer.Serialize(stored, StateJson.Default.SweepRecord));
            return await update.ExecuteNonQueryAsync(token).ConfigureAwait(false) == 1;
        }, ct);
    }

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
    public Task<bool> TryUpdateTrialAsync(TrialRecord updated, long expectedVersion, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(updated);
        var stored = updated with { Version = expectedVersion + 1 };
        return WriteAsync(async (db, token) =>
        {
            using var update = Command(db, null,
                "UPDATE trials SET version = @new, fencing_token = @token, json = @json WHERE id = @id AND version = @expected;");
            update.Parameters.AddWithValue("@id", stored.Id);
            update.Parameters.AddWithValue("@expected", expectedVersion);
            update.Parameters.AddWithValue("@new", stored.Version);
            update.Parameters.AddWithValue("@token", stored.FencingToken);
            update.Parameters.AddWithValue("@json", JsonSerializer.Serialize(stored, StateJson.Default.TrialRecord));
            return await update.ExecuteNonQueryAsync(token).ConfigureAwait(false) == 1;
        }, ct);
    }

    /// <inheritdoc />
    public Task<MetricAppendResult> AppendMetricAsync(string trialId, long fencingToken, MetricPointRecord point, CancellationToken ct)
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
            using var insert = Command(db, tx, "INSERT INTO metrics (trial_id, step, json) VALUES (@id, @step, @json) ON CONFLICT DO NOTHING;");
            insert.Parameters.AddWithValue("@id", trialId);
            insert.Parameters.AddWithValue("@step", point.Step);
            insert.Parameters.AddWithValue("@json", json);
            if (await insert.ExecuteNonQueryAsync(token).ConfigureAwait(false) == 0) return MetricAppendResult.Duplicate;
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
    public Task UpsertWorkerAsync(WorkerRecord worker, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(worker);
        var json = JsonSerializer.Serialize(worker, StateJson.Default.WorkerRecord);
        return WriteAsync(async (db, token) =>
        {
            using var upsert = Command(db, null, "INSERT INTO workers (id, json) VALUES (@id, @json) ON CONFLICT (id) DO UPDATE SET json = excluded.json;");
            upsert.Parameters.AddWithValue("@id", worker.Id);
            upsert.Parameters.AddWithValue("@json", json);
            await upsert.ExecuteNonQueryAsync(token).ConfigureAwait(false);
            return true;
        }, ct);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<WorkerRecord>> ListWorkersAsync(CancellationToken ct) =>
        ReadManyAsync("SELECT json FROM workers ORDER BY id;", null, StateJson.Default.WorkerRecord, ct);

    /// <inheritdoc />
    public Task RemoveWorkerAsync(string workerId, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(workerId);
        return WriteAsync(async (db, token) =>
        {
            using var delete = Command(db, null, "DELETE FROM workers WHERE id = @id;");
            delete.Parameters.AddWithValue("@id", workerId);
            await delete.ExecuteNonQueryAsync(token).ConfigureAwait(false);
            return true;
        }, ct);
    }

    /// <summary>Closes the database.</summary>
    public void Dispose()
    {
        // Pooled reader connections would otherwise keep the file (and its WAL) open.
        if (!_inMemory) SqliteConnection.ClearPool(_writer);
        _writer.Dispose();
        _writeGate.Dispose();
    }

    /// <summary>Closes the database.</summary>
    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }

    private readonly record struct InsertedTrials(int Count, string? FirstSkipped);

    // One prepared statement reused for every row: 10,000 trials insert in one transaction
    // without re-parsing the SQL.
    private static async Task<InsertedTrials> InsertTrialsAsync(SqliteConnection db, SqliteTransaction tx, IReadOnlyList<TrialRecord> trials, CancellationToken ct)
    {
        using var insert = Command(db, tx, """
            INSERT INTO trials (id, sweep_id, idx, version, fencing_token, json)
            VALUES (@id, @sweep, @idx, @version, @token, @json) ON CONFLICT (id) DO NOTHING;
            """);
        var id = insert.Parameters.Add("@id", SqliteType.Text);
        var sweep = insert.Parameters.Add("@sweep", SqliteType.Text);
        var idx = insert.Parameters.Add("@idx", SqliteType.Integer);
        var version = insert.Parameters.Add("@version", SqliteType.Integer);
        var token = insert.Parameters.Add("@token", SqliteType.Integer);
        var json = insert.Parameters.Add("@json", SqliteType.Text);
        insert.Prepare();
        var count = 0;
        string? firstSkipped = null;
        foreach (var trial in trials)
        {
            id.Value = trial.Id;
            sweep.Value = trial.SweepId;
            idx.Value = trial.Index;
            version.Value = trial.Version;
            token.Value = trial.FencingToken;
            json.Value = JsonSerializer.Serialize(trial, StateJson.Default.TrialRecord);
            if (await insert.ExecuteNonQueryAsync(ct).ConfigureAwait(false) == 1) count++;
            else firstSkipped ??= trial.Id;
        }
        return new InsertedTrials(count, firstSkipped);
    }

    /// <inheritdoc />
    public Task PingAsync(CancellationToken ct) =>
        WriteAsync(async (db, token) =>
        {
            await ExecuteAsync(db, "SELECT 1;", token).ConfigureAwait(false);
            return true;
        }, ct);

    private async Task<T> WriteAsync<T>(Func<SqliteConnection, CancellationToken, Task<T>> write, CancellationToken ct)
    {
        await _writeGate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            return await write(_writer, ct).ConfigureAwait(false);
        }
        catch (SqliteException e) when (IsUnavailable(e))
        {
            throw StateStoreErrors.Unavailable(StoreName, e);
        }
        finally
        {
            _writeGate.Release();
        }
    }

    private async Task<T?> ReadOneAsync<T>(string sql, string id, JsonTypeInfo<T> info, CancellationToken ct) where T : class
    {
        var list = await ReadManyAsync(sql, id, info, ct).ConfigureAwait(false);
        return list.Count == 0 ? null : list[0];
    }

    private async Task<IReadOnlyList<T>> ReadManyAsync<T>(string sql, string? id, JsonTypeInfo<T> info, CancellationToken ct)
    {
        if (_inMemory) return await WriteAsync((db, token) => QueryAsync(db, sql, id, info, token), ct).ConfigureAwait(false);
        try
        {
            // Each read takes its own pooled connection: WAL lets it run beside the writer.
            using var db = new SqliteConnection(_connectionString);
            await db.OpenAsync(ct).ConfigureAwait(false);
            return await QueryAsync(db, sql, id, info, ct).ConfigureAwait(false);
        }
        catch (SqliteException e) when (IsUnavailable(e))
        {
            throw StateStoreErrors.Unavailable(StoreName, e);
        }
    }

    private static async Task<IReadOnlyList<T>> QueryAsync<T>(SqliteConnection db, string sql, string? id, JsonTypeInfo<T> info, CancellationToken ct)
    {
        using var query = Command(db, null, sql);
        if (id is not null) query.Parameters.AddWithValue("@id", id);
        using var reader = await query.ExecuteReaderAsync(ct).ConfigureAwait(false);
        var list = new List<T>();
        while (await reader.ReadAsync(ct).ConfigureAwait(false))
        {
            list.Add(JsonSerializer.Deserialize(reader.GetString(0), info)
                ?? throw new InvalidDataException($"{db.DataSource} holds a null {typeof(T).Name}."));
        }
        return list;
    }

    private static SqliteCommand Command(SqliteConnection db, SqliteTransaction? tx, string sql)
    {
        var command = db.CreateCommand();
        command.Transaction = tx;
        command.CommandText = sql;
        return command;
    }

    private static async Task ExecuteAsync(SqliteConnection db, string sql, CancellationToken ct)
    {
        using var command = Command(db, null, sql);
        await command.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
    }

    // Failures of the medium rather than of the request: the disk, the file, a lock held too long.
    private static bool IsUnavailable(SqliteException e) =>
        (e.SqliteErrorCode & 0xFF) is SqliteBusy or SqliteLocked or SqliteIoErr or SqliteFull or SqliteCantOpen;
}

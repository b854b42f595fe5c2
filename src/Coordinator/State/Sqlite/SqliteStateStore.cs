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
public sealed partial class SqliteStateStore : IStateStore, IAsyncDisposable, IDisposable
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
        SqliteConnection writer;
        try
        {
            writer = await OpenCoreAsync(connectionString, inMemory: false, ct).ConfigureAwait(false);
        }
        // SQLITE_CORRUPT (11), SQLITE_NOTADB (26): a damaged or foreign file. Said with its path, never overwritten.
        catch (SqliteException e) when (e.SqliteErrorCode is 11 or 26)
        {
            throw new InvalidDataException($"{path}: the state database is damaged or not a state database ({e.Message.TrimEnd('.')}); " +
                                           "move it aside to start with an empty state, or restore it from a copy");
        }
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
            await SqliteSchema.EnsureAsync(connection, ct).ConfigureAwait(false);
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
        ReadManyAsync("SELECT json FROM sweeps ORDER BY seq;", (string?)null, StateJson.Default.SweepRecord, ct);

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
        ReadManyAsync("SELECT json FROM workers ORDER BY id;", (string?)null, StateJson.Default.WorkerRecord, ct);

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

    private Task<IReadOnlyList<T>> ReadManyAsync<T>(string sql, string? id, JsonTypeInfo<T> info, CancellationToken ct) =>
        ReadManyAsync(sql, q => { if (id is not null) q.Parameters.AddWithValue("@id", id); }, info, ct);

    private Task<IReadOnlyList<T>> ReadManyAsync<T>(string sql, Action<SqliteCommand> bind, JsonTypeInfo<T> info, CancellationToken ct) =>
        ReadAsync(sql, bind, async (reader, token) =>
        {
            var list = new List<T>();
            while (await reader.ReadAsync(token).ConfigureAwait(false))
            {
                list.Add(JsonSerializer.Deserialize(reader.GetString(0), info)
                    ?? throw new InvalidDataException($"The SQLite state store holds a null {typeof(T).Name}."));
            }
            return (IReadOnlyList<T>)list;
        }, ct);

    // Runs a query and hands its reader to `read`.
    private async Task<TResult> ReadAsync<TResult>(string sql, Action<SqliteCommand> bind, Func<SqliteDataReader, CancellationToken, Task<TResult>> read, CancellationToken ct)
    {
        async Task<TResult> QueryAsync(SqliteConnection db, CancellationToken token)
        {
            using var query = Command(db, null, sql);
            bind(query);
            using var reader = await query.ExecuteReaderAsync(token).ConfigureAwait(false);
            return await read(reader, token).ConfigureAwait(false);
        }

        if (_inMemory) return await WriteAsync(QueryAsync, ct).ConfigureAwait(false);
        try
        {
            // Each read takes its own pooled connection: WAL lets it run beside the writer.
            using var db = new SqliteConnection(_connectionString);
            await db.OpenAsync(ct).ConfigureAwait(false);
            return await QueryAsync(db, ct).ConfigureAwait(false);
        }
        catch (SqliteException e) when (IsUnavailable(e))
        {
            throw StateStoreErrors.Unavailable(StoreName, e);
        }
    }

    private static SqliteCommand Command(SqliteConnection db, SqliteTransaction? tx, string sql)
    {
        var command = db.CreateCommand();
        command.Transaction = tx;
        command.CommandText = sql;
        return command;
    }

    internal static async Task ExecuteAsync(SqliteConnection db, string sql, CancellationToken ct)
    {
        using var command = Command(db, null, sql);
        await command.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
    }

    // Failures of the medium rather than of the request: the disk, the file, a lock held too long.
    private static bool IsUnavailable(SqliteException e) =>
        (e.SqliteErrorCode & 0xFF) is SqliteBusy or SqliteLocked or SqliteIoErr or SqliteFull or SqliteCantOpen;
}

using System.Globalization;
using System.Text.Json;
using Microsoft.Data.Sqlite;
using Orchestrator.Coordinator.Domain;

namespace Orchestrator.Coordinator.State.Sqlite;

/// <summary>
/// The SQLite schema of <see cref="SqliteStateStore"/> (docs/state.md describes it). Records are
/// stored whole as JSON text next to the columns queries and checks need: the id, the version
/// for compare-and-set, the fencing token, the creation order, the trial index, and the trial's
/// state and lease expiry (indexed, so the scheduler's questions never read every trial).
/// Trial counts per sweep and state are kept by triggers.
/// </summary>
internal static class SqliteSchema
{
    /// <summary>Stored in <c>PRAGMA user_version</c>; a newer file is refused rather than misread.</summary>
    public const int Version = 3;

    private const string Create = """
        CREATE TABLE IF NOT EXISTS sweeps (
            seq     INTEGER PRIMARY KEY,            -- creation order (rowid)
            id      TEXT    NOT NULL UNIQUE,
            version INTEGER NOT NULL,
            json    TEXT    NOT NULL
        );
        CREATE TABLE IF NOT EXISTS trials (
            id            TEXT    PRIMARY KEY,
            sweep_id      TEXT    NOT NULL REFERENCES sweeps (id),
            idx           INTEGER NOT NULL,
            version       INTEGER NOT NULL,
            fencing_token INTEGER NOT NULL,
            json          TEXT    NOT NULL,
            state         INTEGER NOT NULL DEFAULT 0, -- TrialStatus: 0 pending, 1 running, 2 completed, 3 failed, 4 cancelled
            lease_ms      INTEGER                     -- lease expiry (Unix ms) while running, else NULL
        );
        CREATE INDEX IF NOT EXISTS trials_by_sweep ON trials (sweep_id, idx);
        CREATE INDEX IF NOT EXISTS trials_by_state ON trials (sweep_id, state, idx);
        CREATE INDEX IF NOT EXISTS trials_by_lease ON trials (lease_ms) WHERE lease_ms IS NOT NULL;
        CREATE TABLE IF NOT EXISTS trial_counts (
            sweep_id TEXT    NOT NULL,
            state    INTEGER NOT NULL,
            n        INTEGER NOT NULL,
            PRIMARY KEY (sweep_id, state)
        ) WITHOUT ROWID;
        CREATE TRIGGER IF NOT EXISTS trials_count_insert AFTER INSERT ON trials BEGIN
            INSERT OR IGNORE INTO trial_counts (sweep_id, state, n) VALUES (NEW.sweep_id, NEW.state, 0);
            UPDATE trial_counts SET n = n + 1 WHERE sweep_id = NEW.sweep_id AND state = NEW.state;
        END;
        CREATE TRIGGER IF NOT EXISTS trials_count_update AFTER UPDATE OF state ON trials WHEN OLD.state <> NEW.state BEGIN
            UPDATE trial_counts SET n = n - 1 WHERE sweep_id = OLD.sweep_id AND state = OLD.state;
            INSERT OR IGNORE INTO trial_counts (sweep_id, state, n) VALUES (NEW.sweep_id, NEW.state, 0);
            UPDATE trial_counts SET n = n + 1 WHERE sweep_id = NEW.sweep_id AND state = NEW.state;
        END;
        CREATE TABLE IF NOT EXISTS metrics (
            trial_id TEXT    NOT NULL,
            step     INTEGER NOT NULL,
            json     TEXT    NOT NULL,
            PRIMARY KEY (trial_id, step)            -- the step is the idempotency key
        ) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS trial_logs (
            trial_id TEXT    NOT NULL,
            seq      INTEGER NOT NULL,              -- from 1, over every attempt; trimming keeps the newest, so MAX(seq) is the last
            time     TEXT    NOT NULL,              -- round-trip ("O") format
            text     TEXT    NOT NULL,
            PRIMARY KEY (trial_id, seq)
        ) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS workers (
            id   TEXT PRIMARY KEY,
            json TEXT NOT NULL
        );
        """;

    /// <summary>
    /// Creates the schema in a new file, or upgrades an older one in place (one transaction, so a
    /// crash leaves the old schema intact; version 2 lacks only the trial_logs table, which the
    /// idempotent create adds). Refuses a file written by a newer build.
    /// </summary>
    public static async Task EnsureAsync(SqliteConnection db, CancellationToken ct)
    {
        int version;
        using (var check = db.CreateCommand())
        {
            check.CommandText = "PRAGMA user_version;";
            version = Convert.ToInt32(await check.ExecuteScalarAsync(ct).ConfigureAwait(false), CultureInfo.InvariantCulture);
        }
        if (version > Version)
            throw new InvalidDataException($"{db.DataSource} has state schema {version}; this build reads up to {Version}.");
        if (version == Version) return;

        using var tx = db.BeginTransaction();
        if (version == 1) await UpgradeFrom1Async(db, tx, ct).ConfigureAwait(false);
        await RunAsync(db, tx, Create + $"PRAGMA user_version = {Version};", ct).ConfigureAwait(false);
        if (version == 1)
            await RunAsync(db, tx, "INSERT INTO trial_counts (sweep_id, state, n) SELECT sweep_id, state, COUNT(*) FROM trials GROUP BY sweep_id, state;", ct).ConfigureAwait(false);
        tx.Commit();
    }

    /// <summary>Version 1 had no state or lease columns: add them and fill them from each trial's JSON.</summary>
    private static async Task UpgradeFrom1Async(SqliteConnection db, SqliteTransaction tx, CancellationToken ct)
    {
        await RunAsync(db, tx, "ALTER TABLE trials ADD COLUMN state INTEGER NOT NULL DEFAULT 0; ALTER TABLE trials ADD COLUMN lease_ms INTEGER;", ct).ConfigureAwait(false);
        var entries = new List<(string Id, TrialIndexEntry Index)>();
        using (var read = db.CreateCommand())
        {
            read.Transaction = tx;
            read.CommandText = "SELECT id, json FROM trials;";
            using var reader = await read.ExecuteReaderAsync(ct).ConfigureAwait(false);
            while (await reader.ReadAsync(ct).ConfigureAwait(false))
            {
                var trial = JsonSerializer.Deserialize(reader.GetString(1), StateJson.Default.TrialRecord)
                    ?? throw new InvalidDataException($"{db.DataSource}: trial {reader.GetString(0)} holds null.");
                entries.Add((reader.GetString(0), TrialIndexEntry.Of(trial)));
            }
        }
        using var update = db.CreateCommand();
        update.Transaction = tx;
        update.CommandText = "UPDATE trials SET state = @state, lease_ms = @lease WHERE id = @id;";
        var id = update.Parameters.Add("@id", SqliteType.Text);
        var state = update.Parameters.Add("@state", SqliteType.Integer);
        var lease = update.Parameters.Add("@lease", SqliteType.Integer);
        foreach (var (trialId, index) in entries)
        {
            id.Value = trialId;
            state.Value = index.State;
            lease.Value = index.LeaseExpiresMs is { } ms ? ms : DBNull.Value;
            await update.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
        }
    }

    private static async Task RunAsync(SqliteConnection db, SqliteTransaction tx, string sql, CancellationToken ct)
    {
        using var command = db.CreateCommand();
        command.Transaction = tx;
        command.CommandText = sql;
        await command.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
    }
}

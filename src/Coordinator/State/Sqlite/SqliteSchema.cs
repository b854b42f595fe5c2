namespace Orchestrator.Coordinator.State.Sqlite;

/// <summary>
/// The SQLite schema of <see cref="SqliteStateStore"/> (docs/state.md describes it). Records are
/// stored whole as JSON text next to the columns queries and checks need: the id, the version
/// for compare-and-set, the fencing token, the creation order and the trial index.
/// </summary>
internal static class SqliteSchema
{
    /// <summary>Stored in <c>PRAGMA user_version</c>; a newer file is refused rather than misread.</summary>
    public const int Version = 1;

    public const string Create = """
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
            json          TEXT    NOT NULL
        );
        CREATE INDEX IF NOT EXISTS trials_by_sweep ON trials (sweep_id, idx);
        CREATE TABLE IF NOT EXISTS metrics (
            trial_id TEXT    NOT NULL,
            step     INTEGER NOT NULL,
            json     TEXT    NOT NULL,
            PRIMARY KEY (trial_id, step)            -- the step is the idempotency key
        ) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS workers (
            id   TEXT PRIMARY KEY,
            json TEXT NOT NULL
        );
        """;
}

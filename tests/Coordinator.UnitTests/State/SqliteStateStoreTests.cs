using System.Text.Json;
using Microsoft.Data.Sqlite;
using Orchestrator.Coordinator.Domain;
using Orchestrator.Coordinator.State;
using Orchestrator.Coordinator.State.Sqlite;
using Orchestrator.TestSupport;

namespace Orchestrator.Coordinator.UnitTests.State;

/// <summary>The state store contract on a SQLite file in a temporary state folder.</summary>
public sealed class SqliteStateStoreTests : StateStoreContract
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "orch-sqlite-" + Guid.NewGuid().ToString("N"));
    private readonly Dictionary<IStateStore, string> _folders = [];

    protected override async Task<IStateStore> OpenStoreAsync(CancellationToken ct)
    {
        var folder = Path.Combine(_root, _folders.Count.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var store = await SqliteStateStore.OpenAsync(folder, ct);
        _folders[store] = folder;
        return store;
    }

    // A new instance on the same file, after the old one is closed: what a restarted
    // `orch local` does.
    protected override async Task<IStateStore> RestartAsync(IStateStore store, CancellationToken ct)
    {
        var folder = _folders[store];
        await ((SqliteStateStore)store).DisposeAsync();
        Assert.True(File.Exists(Path.Combine(folder, SqliteStateStore.FileName)));
        return await SqliteStateStore.OpenAsync(folder, ct);
    }

    [Fact]
    public async Task A_file_that_is_not_a_state_database_is_named_and_left_as_it_was()
    {
        var folder = Path.Combine(_root, "garbage");
        Directory.CreateDirectory(folder);
        var file = Path.Combine(folder, SqliteStateStore.FileName);
        var bytes = System.Text.Encoding.UTF8.GetBytes(string.Concat(Enumerable.Repeat("not a database at all; ", 400)));
        await File.WriteAllBytesAsync(file, bytes);
        var e = await Assert.ThrowsAsync<InvalidDataException>(() => SqliteStateStore.OpenAsync(folder, CancellationToken.None));
        Assert.StartsWith(file + ": the state database is damaged or not a state database", e.Message, StringComparison.Ordinal);
        Assert.Equal(bytes, await File.ReadAllBytesAsync(file));
    }

    [Fact]
    public async Task A_truncated_state_database_is_named()
    {
        var folder = Path.Combine(_root, "truncated");
        await using (var store = await SqliteStateStore.OpenAsync(folder, CancellationToken.None))
        {
            await store.CreateSweepAsync(Sweep("s1"), Trials("s1", 200), CancellationToken.None);
        }
        var file = Path.Combine(folder, SqliteStateStore.FileName);
        foreach (var side in new[] { file + "-wal", file + "-shm" }) File.Delete(side);
        await using (var stream = new FileStream(file, FileMode.Open)) stream.SetLength(stream.Length / 2);
        var e = await Assert.ThrowsAsync<InvalidDataException>(async () =>
        {
            await using var store = await SqliteStateStore.OpenAsync(folder, CancellationToken.None);
            await store.ListTrialsAsync("s1", CancellationToken.None);
        });
        Assert.StartsWith(file + ": the state database is damaged", e.Message, StringComparison.Ordinal);
    }

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        try { Directory.Delete(_root, recursive: true); }
        catch (IOException) { /* a leftover temp folder is harmless */ }
    }

    [Fact]
    public async Task The_state_folder_is_created_and_holds_one_database_file()
    {
        var folder = Path.Combine(_root, "nested", "state");
        await using var store = await SqliteStateStore.OpenAsync(folder, Ct).DefaultTimeout();
        await store.CreateSweepAsync(Sweep("s1"), Trials("s1", 1), Ct).DefaultTimeout();
        Assert.Equal(Path.Combine(folder, "state.db"), store.DatabasePath);
        Assert.True(File.Exists(store.DatabasePath));
    }

    [Fact]
    public async Task An_in_memory_store_keeps_its_data_until_disposed_and_shares_it_with_no_other_store()
    {
        await using var first = await SqliteStateStore.OpenInMemoryAsync(Ct).DefaultTimeout();
        await using var second = await SqliteStateStore.OpenInMemoryAsync(Ct).DefaultTimeout();
        await first.CreateSweepAsync(Sweep("s1"), Trials("s1", 2), Ct).DefaultTimeout();
        var reads = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(() => first.ListTrialsAsync("s1", Ct)))).DefaultTimeout();
        Assert.All(reads, r => Assert.Equal(2, r.Count));
        Assert.Empty(await second.ListSweepsAsync(Ct).DefaultTimeout());
    }

    [Fact]
    public async Task A_version_1_file_is_upgraded_in_place_with_its_trials_indexed()
    {
        var folder = Path.Combine(_root, "v1");
        Directory.CreateDirectory(folder);
        var running = Trial("s1", 1) with { State = TrialStatus.Running, FencingToken = 2, LeaseExpiresAt = T0 };
        await using (var db = new SqliteConnection($"Data Source={Path.Combine(folder, SqliteStateStore.FileName)};Pooling=False"))
        {
            await db.OpenAsync(Ct);
            using var create = db.CreateCommand();
            // The version 1 schema, as earlier builds wrote it.
            create.CommandText = """
                CREATE TABLE sweeps (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, version INTEGER NOT NULL, json TEXT NOT NULL);
                CREATE TABLE trials (id TEXT PRIMARY KEY, sweep_id TEXT NOT NULL REFERENCES sweeps (id), idx INTEGER NOT NULL,
                                     version INTEGER NOT NULL, fencing_token INTEGER NOT NULL, json TEXT NOT NULL);
                CREATE INDEX trials_by_sweep ON trials (sweep_id, idx);
                CREATE TABLE metrics (trial_id TEXT NOT NULL, step INTEGER NOT NULL, json TEXT NOT NULL, PRIMARY KEY (trial_id, step)) WITHOUT ROWID;
                CREATE TABLE workers (id TEXT PRIMARY KEY, json TEXT NOT NULL);
                PRAGMA user_version = 1;
                """;
            await create.ExecuteNonQueryAsync(Ct);
            using var insert = db.CreateCommand();
            insert.CommandText = "INSERT INTO sweeps (id, version, json) VALUES ('s1', 0, @sweep);";
            insert.Parameters.AddWithValue("@sweep", JsonSerializer.Serialize(Sweep("s1"), StateJson.Default.SweepRecord));
            await insert.ExecuteNonQueryAsync(Ct);
            foreach (var t in new[] { Trial("s1", 0), running, Trial("s1", 2) })
            {
                using var row = db.CreateCommand();
                row.CommandText = "INSERT INTO trials (id, sweep_id, idx, version, fencing_token, json) VALUES (@id, 's1', @idx, 0, @token, @json);";
                row.Parameters.AddWithValue("@id", t.Id);
                row.Parameters.AddWithValue("@idx", t.Index);
                row.Parameters.AddWithValue("@token", t.FencingToken);
                row.Parameters.AddWithValue("@json", JsonSerializer.Serialize(t, StateJson.Default.TrialRecord));
                await row.ExecuteNonQueryAsync(Ct);
            }
        }

        await using var store = await SqliteStateStore.OpenAsync(folder, Ct).DefaultTimeout();
        Assert.Equal(new TrialCounts(2, 1, 0, 0, 0), await store.CountTrialsAsync("s1", Ct).DefaultTimeout());
        Assert.Equal([0, 2], (await store.ListPendingTrialsAsync("s1", 10, Ct).DefaultTimeout()).Select(t => t.Index));
        Assert.Equal(["s1-t0001"], (await store.ListExpiredLeasesAsync(T0.AddSeconds(1), 10, Ct).DefaultTimeout()).Select(t => t.Id));
        AssertSame(running, await store.GetTrialAsync("s1-t0001", Ct).DefaultTimeout());
        // And it goes on counting.
        Assert.True(await store.TryUpdateTrialAsync(running with { State = TrialStatus.Completed, LeaseExpiresAt = null }, 0, Ct).DefaultTimeout());
        Assert.Equal(new TrialCounts(2, 0, 1, 0, 0), await store.CountTrialsAsync("s1", Ct).DefaultTimeout());
    }
}

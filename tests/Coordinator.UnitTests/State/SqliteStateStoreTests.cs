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
}

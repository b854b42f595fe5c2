using System.Text.Json;
using Orchestrator.Coordinator.Domain;
using Orchestrator.Coordinator.State;
using Orchestrator.TestSupport;

namespace Orchestrator.Coordinator.UnitTests.State;

/// <summary>
/// The behaviour every <see cref="IStateStore"/> must have. Each implementation derives a test
/// class that says how to open a fresh store and how to restart its backing storage.
/// </summary>
public abstract partial class StateStoreContract : IAsyncLifetime
{
    private readonly List<IStateStore> _opened = [];

    /// <summary>Opens an empty store that no other test sees.</summary>
    protected abstract Task<IStateStore> OpenStoreAsync(CancellationToken ct);

    /// <summary>
    /// Stops and restarts what backs <paramref name="store"/> the hard way, and returns the store
    /// to use afterwards (a new instance on the same data, or the same instance reconnected).
    /// </summary>
    protected abstract Task<IStateStore> RestartAsync(IStateStore store, CancellationToken ct);

    /// <summary>Cancels work still running when a test times out.</summary>
    protected CancellationToken Ct => _cts.Token;
    private readonly CancellationTokenSource _cts = new(TimeSpan.FromMinutes(2));

    public Task InitializeAsync() => Task.CompletedTask;

    public virtual async Task DisposeAsync()
    {
        foreach (var store in _opened)
        {
            if (store is IAsyncDisposable disposable) await disposable.DisposeAsync().AsTask().DefaultTimeout();
        }
        _cts.Dispose();
    }

    protected async Task<IStateStore> NewStoreAsync()
    {
        var store = await OpenStoreAsync(Ct).DefaultTimeout();
        _opened.Add(store);
        return store;
    }

    protected void Track(IStateStore store)
    {
        if (!_opened.Contains(store)) _opened.Add(store);
    }

    // ---- sweeps and trials ----

    [Fact]
    public async Task A_created_sweep_and_its_trials_read_back_unchanged()
    {
        var store = await NewStoreAsync();
        var sweep = Sweep("s1");
        var trials = Trials("s1", 3);
        await store.CreateSweepAsync(sweep, trials, Ct).DefaultTimeout();

        AssertSame(sweep, await store.GetSweepAsync("s1", Ct).DefaultTimeout());
        AssertSame(trials[1], await store.GetTrialAsync(trials[1].Id, Ct).DefaultTimeout());
        var listed = await store.ListTrialsAsync("s1", Ct).DefaultTimeout();
        Assert.Equal(3, listed.Count);
        for (var i = 0; i < 3; i++) AssertSame(trials[i], listed[i]);
    }

    [Fact]
    public async Task Unknown_ids_read_as_null_or_empty()
    {
        var store = await NewStoreAsync();
        Assert.Null(await store.GetSweepAsync("nope", Ct).DefaultTimeout());
        Assert.Null(await store.GetTrialAsync("nope-t0000", Ct).DefaultTimeout());
        Assert.Empty(await store.ListSweepsAsync(Ct).DefaultTimeout());
        Assert.Empty(await store.ListTrialsAsync("nope", Ct).DefaultTimeout());
        Assert.Empty(await store.GetMetricsAsync("nope-t0000", Ct).DefaultTimeout());
        Assert.Empty(await store.ListWorkersAsync(Ct).DefaultTimeout());
    }

    [Fact]
    public async Task Sweeps_are_listed_in_creation_order()
    {
        var store = await NewStoreAsync();
        foreach (var id in new[] { "zeta", "alpha", "mid" })
            await store.CreateSweepAsync(Sweep(id), Trials(id, 1), Ct).DefaultTimeout();

        var listed = await store.ListSweepsAsync(Ct).DefaultTimeout();
        Assert.Equal(["zeta", "alpha", "mid"], listed.Select(s => s.Id));
    }

    [Fact]
    public async Task Trials_are_listed_by_index_whatever_order_they_were_given_in()
    {
        var store = await NewStoreAsync();
        var trials = Trials("s1", 12);
        var shuffled = trials.OrderBy(t => (t.Index * 7) % 12).ToList();
        await store.CreateSweepAsync(Sweep("s1"), shuffled, Ct).DefaultTimeout();

        var listed = await store.ListTrialsAsync("s1", Ct).DefaultTimeout();
        Assert.Equal(Enumerable.Range(0, 12), listed.Select(t => t.Index));
    }

    [Fact]
    public async Task Creating_a_sweep_twice_is_refused_and_changes_nothing()
    {
        var store = await NewStoreAsync();
        await store.CreateSweepAsync(Sweep("s1"), Trials("s1", 2), Ct).DefaultTimeout();

        var again = Sweep("s1") with { Name = "other" };
        await Assert.ThrowsAsync<InvalidOperationException>(() => store.CreateSweepAsync(again, Trials("s1", 5), Ct)).DefaultTimeout();

        Assert.Equal("sweep s1", (await store.GetSweepAsync("s1", Ct).DefaultTimeout())!.Name);
        Assert.Equal(2, (await store.ListTrialsAsync("s1", Ct).DefaultTimeout()).Count);
        Assert.Single(await store.ListSweepsAsync(Ct).DefaultTimeout());
    }

    [Fact]
    public async Task Creating_a_sweep_whose_trial_id_exists_stores_nothing()
    {
        var store = await NewStoreAsync();
        await store.CreateSweepAsync(Sweep("a"), [Trial("a", 0) with { Id = "shared" }], Ct).DefaultTimeout();

        TrialRecord[] clash = [Trial("b", 0), Trial("b", 1) with { Id = "shared" }];
        await Assert.ThrowsAsync<InvalidOperationException>(() => store.CreateSweepAsync(Sweep("b"), clash, Ct)).DefaultTimeout();

        Assert.Null(await store.GetSweepAsync("b", Ct).DefaultTimeout());
        Assert.Null(await store.GetTrialAsync(clash[0].Id, Ct).DefaultTimeout());
        Assert.Equal("a", (await store.GetTrialAsync("shared", Ct).DefaultTimeout())!.SweepId);
        Assert.Equal(["a"], (await store.ListSweepsAsync(Ct).DefaultTimeout()).Select(s => s.Id));
    }

    [Fact]
    public async Task Trials_of_another_sweep_or_repeated_ids_are_rejected()
    {
        var store = await NewStoreAsync();
        await Assert.ThrowsAsync<ArgumentException>(() => store.CreateSweepAsync(Sweep("s1"), [Trial("s2", 0)], Ct)).DefaultTimeout();
        await Assert.ThrowsAsync<ArgumentException>(() => store.CreateSweepAsync(Sweep("s1"), [Trial("s1", 0), Trial("s1", 0)], Ct)).DefaultTimeout();
        Assert.Null(await store.GetSweepAsync("s1", Ct).DefaultTimeout());
    }

    [Fact]
    public async Task A_sweep_of_ten_thousand_trials_is_created_in_one_call_and_listed_whole()
    {
        var store = await NewStoreAsync();
        var trials = Trials("big", 10_000);
        await store.CreateSweepAsync(Sweep("big"), trials, Ct).DefaultTimeout();

        var listed = await store.ListTrialsAsync("big", Ct).DefaultTimeout();
        Assert.Equal(10_000, listed.Count);
        Assert.Equal(Enumerable.Range(0, 10_000), listed.Select(t => t.Index));
        AssertSame(trials[9_999], listed[9_999]);
    }

    // ---- compare-and-set ----

    [Fact]
    public async Task Updating_at_the_stored_version_succeeds_and_the_store_assigns_the_next_version()
    {
        var store = await NewStoreAsync();
        await store.CreateSweepAsync(Sweep("s1"), Trials("s1", 1), Ct).DefaultTimeout();

        var sweep = (await store.GetSweepAsync("s1", Ct).DefaultTimeout())!;
        // The record's own Version is ignored: the store writes expected + 1.
        Assert.True(await store.TryUpdateSweepAsync(sweep with { State = SweepStatus.Running, Version = 99 }, sweep.Version, Ct).DefaultTimeout());
        var stored = (await store.GetSweepAsync("s1", Ct).DefaultTimeout())!;
        Assert.Equal(SweepStatus.Running, stored.State);
        Assert.Equal(sweep.Version + 1, stored.Version);

        var trial = (await store.GetTrialAsync("s1-t0000", Ct).DefaultTimeout())!;
        Assert.True(await store.TryUpdateTrialAsync(trial with { State = TrialStatus.Running, FencingToken = 1, WorkerIds = ["w1"] }, trial.Version, Ct).DefaultTimeout());
        var storedTrial = (await store.GetTrialAsync("s1-t0000", Ct).DefaultTimeout())!;
        Assert.Equal(TrialStatus.Running, storedTrial.State);
        Assert.Equal(["w1"], storedTrial.WorkerIds);
        Assert.Equal(trial.Version + 1, storedTrial.Version);
        AssertSame(storedTrial, (await store.ListTrialsAsync("s1", Ct).DefaultTimeout()).Single());
    }

    [Fact]
    public async Task Updating_at_a_stale_version_returns_false_and_leaves_the_record_unchanged()
    {
        var store = await NewStoreAsync();
        await store.CreateSweepAsync(Sweep("s1"), Trials("s1", 1), Ct).DefaultTimeout();
        var sweep = (await store.GetSweepAsync("s1", Ct).DefaultTimeout())!;
        var trial = (await store.GetTrialAsync("s1-t0000", Ct).DefaultTimeout())!;
        Assert.True(await store.TryUpdateSweepAsync(sweep with { Message = "first" }, sweep.Version, Ct).DefaultTimeout());
        Assert.True(await store.TryUpdateTrialAsync(trial with { Message = "first" }, trial.Version, Ct).DefaultTimeout());
        var sweepAfterFirst = (await store.GetSweepAsync("s1", Ct).DefaultTimeout())!;
        var trialAfterFirst = (await store.GetTrialAsync("s1-t0000", Ct).DefaultTimeout())!;

        Assert.False(await store.TryUpdateSweepAsync(sweep with { Message = "stale" }, sweep.Version, Ct).DefaultTimeout());
        Assert.False(await store.TryUpdateTrialAsync(trial with { Message = "stale", FencingToken = 7 }, trial.Version, Ct).DefaultTimeout());

        AssertSame(sweepAfterFirst, await store.GetSweepAsync("s1", Ct).DefaultTimeout());
        AssertSame(trialAfterFirst, await store.GetTrialAsync("s1-t0000", Ct).DefaultTimeout());
        // The refused update did not move the fencing token either.
        Assert.Equal(MetricAppendResult.Appended, await store.AppendMetricAsync("s1-t0000", 0, Point(1), Ct).DefaultTimeout());
    }

    [Fact]
    public async Task Updating_an_unknown_record_returns_false_and_creates_nothing()
    {
        var store = await NewStoreAsync();
        Assert.False(await store.TryUpdateSweepAsync(Sweep("ghost"), 0, Ct).DefaultTimeout());
        Assert.False(await store.TryUpdateTrialAsync(Trial("ghost", 0), 0, Ct).DefaultTimeout());
        Assert.Null(await store.GetSweepAsync("ghost", Ct).DefaultTimeout());
        Assert.Null(await store.GetTrialAsync("ghost-t0000", Ct).DefaultTimeout());
    }

    [Fact]
    public async Task Concurrent_updates_at_one_version_have_exactly_one_winner()
    {
        var store = await NewStoreAsync();
        await store.CreateSweepAsync(Sweep("s1"), Trials("s1", 1), Ct).DefaultTimeout();
        var sweep = (await store.GetSweepAsync("s1", Ct).DefaultTimeout())!;
        var trial = (await store.GetTrialAsync("s1-t0000", Ct).DefaultTimeout())!;

        var sweepRace = Enumerable.Range(0, 20).Select(i => Task.Run(() => store.TryUpdateSweepAsync(sweep with { Message = $"writer {i}" }, sweep.Version, Ct)));
        var trialRace = Enumerable.Range(0, 20).Select(i => Task.Run(() => store.TryUpdateTrialAsync(trial with { Message = $"writer {i}" }, trial.Version, Ct)));
        var sweepWins = await Task.WhenAll(sweepRace).DefaultTimeout();
        var trialWins = await Task.WhenAll(trialRace).DefaultTimeout();

        Assert.Equal(1, sweepWins.Count(w => w));
        Assert.Equal(1, trialWins.Count(w => w));
        var winner = Array.IndexOf(sweepWins, true);
        var stored = (await store.GetSweepAsync("s1", Ct).DefaultTimeout())!;
        Assert.Equal($"writer {winner}", stored.Message);
        Assert.Equal(sweep.Version + 1, stored.Version);
    }

    [Fact]
    public async Task Fifty_concurrent_read_modify_write_loops_lose_no_increment()
    {
        var store = await NewStoreAsync();
        await store.CreateSweepAsync(Sweep("s1"), Trials("s1", 1), Ct).DefaultTimeout();
        var initialVersion = (await store.GetSweepAsync("s1", Ct).DefaultTimeout())!.Version;

        async Task IncrementAsync()
        {
            while (true)
            {
                var current = (await store.GetSweepAsync("s1", Ct))!;
                if (await store.TryUpdateSweepAsync(current with { FailedTrials = current.FailedTrials + 1 }, current.Version, Ct)) return;
            }
        }
        await Task.WhenAll(Enumerable.Range(0, 50).Select(_ => Task.Run(IncrementAsync))).DefaultTimeout();

        var final = (await store.GetSweepAsync("s1", Ct).DefaultTimeout())!;
        Assert.Equal(50, final.FailedTrials);
        Assert.Equal(initialVersion + 50, final.Version);
    }

    // ---- adding trials ----

    [Fact]
    public async Task Adding_trials_is_idempotent_and_keeps_existing_ones_as_they_are()
    {
        var store = await NewStoreAsync();
        await store.CreateSweepAsync(Sweep("s1"), Trials("s1", 2), Ct).DefaultTimeout();
        var added = new[] { Trial("s1", 2), Trial("s1", 3) };
        await store.AddTrialsAsync("s1", added, Ct).DefaultTimeout();
        // Re-sent after a lost reply, with a changed copy of an existing trial and one new trial.
        await store.AddTrialsAsync("s1", [added[0] with { Message = "changed" }, added[1], Trial("s1", 4)], Ct).DefaultTimeout();

        var listed = await store.ListTrialsAsync("s1", Ct).DefaultTimeout();
        Assert.Equal([0, 1, 2, 3, 4], listed.Select(t => t.Index));
        AssertSame(added[0], listed[2]);
    }

    [Fact]
    public async Task Adding_trials_to_an_unknown_sweep_is_refused()
    {
        var store = await NewStoreAsync();
        await Assert.ThrowsAsync<InvalidOperationException>(() => store.AddTrialsAsync("ghost", [Trial("ghost", 0)], Ct)).DefaultTimeout();
        Assert.Null(await store.GetTrialAsync("ghost-t0000", Ct).DefaultTimeout());
    }

    // ---- metrics ----

    [Fact]
    public async Task A_metric_is_appended_once_and_a_resent_step_is_a_duplicate()
    {
        var store = await NewStoreAsync();
        await store.CreateSweepAsync(Sweep("s1"), [Trial("s1", 0) with { FencingToken = 3 }], Ct).DefaultTimeout();

        var first = Point(1, loss: 2.5);
        Assert.Equal(MetricAppendResult.Appended, await store.AppendMetricAsync("s1-t0000", 3, first, Ct).DefaultTimeout());
        Assert.Equal(MetricAppendResult.Duplicate, await store.AppendMetricAsync("s1-t0000", 3, Point(1, loss: 9.9), Ct).DefaultTimeout());

        var stored = Assert.Single(await store.GetMetricsAsync("s1-t0000", Ct).DefaultTimeout());
        AssertSame(first, stored);
    }

    [Fact]
    public async Task A_metric_from_a_stale_or_unknown_lease_is_refused()
    {
        var store = await NewStoreAsync();
        await store.CreateSweepAsync(Sweep("s1"), Trials("s1", 1), Ct).DefaultTimeout();
        var trial = (await store.GetTrialAsync("s1-t0000", Ct).DefaultTimeout())!;
        // The trial is reassigned: token 0 → 1. The old holder's writes must be refused.
        Assert.True(await store.TryUpdateTrialAsync(trial with { FencingToken = 1, Attempt = 1 }, trial.Version, Ct).DefaultTimeout());

        Assert.Equal(MetricAppendResult.StaleToken, await store.AppendMetricAsync("s1-t0000", 0, Point(1), Ct).DefaultTimeout());
        Assert.Equal(MetricAppendResult.StaleToken, await store.AppendMetricAsync("s1-t0000", 2, Point(1), Ct).DefaultTimeout());
        Assert.Equal(MetricAppendResult.UnknownTrial, await store.AppendMetricAsync("s1-t9999", 1, Point(1), Ct).DefaultTimeout());
        Assert.Empty(await store.GetMetricsAsync("s1-t0000", Ct).DefaultTimeout());

        Assert.Equal(MetricAppendResult.Appended, await store.AppendMetricAsync("s1-t0000", 1, Point(1), Ct).DefaultTimeout());
        // A stale writer re-sending a stored step is still told it is stale.
        Assert.Equal(MetricAppendResult.StaleToken, await store.AppendMetricAsync("s1-t0000", 0, Point(1), Ct).DefaultTimeout());
    }

    [Fact]
    public async Task Metrics_are_returned_by_step_whatever_order_they_arrived_in()
    {
        var store = await NewStoreAsync();
        await store.CreateSweepAsync(Sweep("s1"), Trials("s1", 2), Ct).DefaultTimeout();
        long[] steps = [5, 1, 3, 10, 2, 3_000_000_000L, 100];
        foreach (var step in steps)
            Assert.Equal(MetricAppendResult.Appended, await store.AppendMetricAsync("s1-t0000", 0, Point(step), Ct).DefaultTimeout());
        await store.AppendMetricAsync("s1-t0001", 0, Point(4), Ct).DefaultTimeout();

        var metrics = await store.GetMetricsAsync("s1-t0000", Ct).DefaultTimeout();
        Assert.Equal(steps.Order(), metrics.Select(m => m.Step));
        Assert.Equal(0.5 * 10, metrics.Single(m => m.Step == 10).Values["loss"]);
        Assert.Equal([4L], (await store.GetMetricsAsync("s1-t0001", Ct).DefaultTimeout()).Select(m => m.Step));
    }

    [Fact]
    public async Task Concurrent_appends_of_one_step_store_it_once()
    {
        var store = await NewStoreAsync();
        await store.CreateSweepAsync(Sweep("s1"), Trials("s1", 1), Ct).DefaultTimeout();
        var results = await Task.WhenAll(Enumerable.Range(0, 20).Select(_ =>
            Task.Run(() => store.AppendMetricAsync("s1-t0000", 0, Point(7), Ct)))).DefaultTimeout();
        Assert.Equal(1, results.Count(r => r == MetricAppendResult.Appended));
        Assert.Equal(19, results.Count(r => r == MetricAppendResult.Duplicate));
        Assert.Single(await store.GetMetricsAsync("s1-t0000", Ct).DefaultTimeout());
    }

    // ---- workers ----

    [Fact]
    public async Task Workers_are_upserted_listed_by_id_and_removed()
    {
        var store = await NewStoreAsync();
        await store.UpsertWorkerAsync(Worker("w2"), Ct).DefaultTimeout();
        await store.UpsertWorkerAsync(Worker("w1"), Ct).DefaultTimeout();
        var busy = Worker("w1") with { State = "busy", TrialId = "s1-t0000", LastHeartbeat = T0.AddMinutes(1) };
        await store.UpsertWorkerAsync(busy, Ct).DefaultTimeout();

        var listed = await store.ListWorkersAsync(Ct).DefaultTimeout();
        Assert.Equal(["w1", "w2"], listed.Select(w => w.Id));
        AssertSame(busy, listed[0]);

        await store.RemoveWorkerAsync("w1", Ct).DefaultTimeout();
        await store.RemoveWorkerAsync("never-seen", Ct).DefaultTimeout();
        Assert.Equal(["w2"], (await store.ListWorkersAsync(Ct).DefaultTimeout()).Select(w => w.Id));
    }

    // ---- persistence ----

    [Fact]
    public async Task Everything_survives_a_restart_of_the_backing_store()
    {
        var store = await NewStoreAsync();
        await store.CreateSweepAsync(Sweep("s1"), Trials("s1", 3), Ct).DefaultTimeout();
        await store.CreateSweepAsync(Sweep("s2"), Trials("s2", 1), Ct).DefaultTimeout();
        var sweep = (await store.GetSweepAsync("s1", Ct).DefaultTimeout())!;
        Assert.True(await store.TryUpdateSweepAsync(sweep with { State = SweepStatus.Running }, sweep.Version, Ct).DefaultTimeout());
        var trial = (await store.GetTrialAsync("s1-t0001", Ct).DefaultTimeout())!;
        Assert.True(await store.TryUpdateTrialAsync(trial with { State = TrialStatus.Running, FencingToken = 4 }, trial.Version, Ct).DefaultTimeout());
        await store.AppendMetricAsync("s1-t0001", 4, Point(1), Ct).DefaultTimeout();
        await store.AppendMetricAsync("s1-t0001", 4, Point(2), Ct).DefaultTimeout();
        await store.UpsertWorkerAsync(Worker("w1"), Ct).DefaultTimeout();
        var before = await SnapshotAsync(store);

        var restarted = await RestartAsync(store, Ct).DefaultTimeout();
        Track(restarted);

        Assert.Equal(before, await SnapshotAsync(restarted));
        // It keeps working: the version, fencing token and step rules hold across the restart.
        var storedSweep = (await restarted.GetSweepAsync("s1", Ct).DefaultTimeout())!;
        Assert.False(await restarted.TryUpdateSweepAsync(sweep, sweep.Version, Ct).DefaultTimeout());
        Assert.True(await restarted.TryUpdateSweepAsync(storedSweep with { State = SweepStatus.Completed }, storedSweep.Version, Ct).DefaultTimeout());
        Assert.Equal(MetricAppendResult.Duplicate, await restarted.AppendMetricAsync("s1-t0001", 4, Point(2), Ct).DefaultTimeout());
        Assert.Equal(MetricAppendResult.StaleToken, await restarted.AppendMetricAsync("s1-t0001", 3, Point(3), Ct).DefaultTimeout());
        Assert.Equal(MetricAppendResult.Appended, await restarted.AppendMetricAsync("s1-t0001", 4, Point(3), Ct).DefaultTimeout());
        await restarted.CreateSweepAsync(Sweep("s3"), Trials("s3", 1), Ct).DefaultTimeout();
        Assert.Equal(["s1", "s2", "s3"], (await restarted.ListSweepsAsync(Ct).DefaultTimeout()).Select(s => s.Id));
    }

    private async Task<string> SnapshotAsync(IStateStore store)
    {
        var parts = new List<string>();
        foreach (var sweep in await store.ListSweepsAsync(Ct).DefaultTimeout())
        {
            parts.Add(Json(sweep));
            foreach (var trial in await store.ListTrialsAsync(sweep.Id, Ct).DefaultTimeout())
            {
                parts.Add(Json(trial));
                parts.AddRange((await store.GetMetricsAsync(trial.Id, Ct).DefaultTimeout()).Select(Json));
            }
        }
        parts.AddRange((await store.ListWorkersAsync(Ct).DefaultTimeout()).Select(Json));
        return string.Join('\n', parts);
    }

    // ---- records ----

    protected static readonly DateTimeOffset T0 = new(2025, 3, 1, 12, 0, 0, TimeSpan.Zero);

    protected static SweepRecord Sweep(string id) => new()
    {
        Id = id,
        Name = $"sweep {id}",
        SpecYaml = "name: test\nsearch:\n  method: grid\n",
        CreatedAt = T0,
        SearcherState = """{"seed":42}""",
    };

    protected static TrialRecord Trial(string sweepId, int index) => new()
    {
        Id = $"{sweepId}-t{index:0000}",
        SweepId = sweepId,
        Index = index,
        Parameters = new Dictionary<string, string> { ["optimizer.lr"] = (0.001 * (index + 1)).ToString("R", System.Globalization.CultureInfo.InvariantCulture), ["model.name"] = "simple_cnn" },
        TrialYaml = $"model: simple_cnn\noptimizer:\n  lr: {index}\n",
        Epochs = 10,
        CreatedAt = T0,
    };

    protected static List<TrialRecord> Trials(string sweepId, int count) =>
        Enumerable.Range(0, count).Select(i => Trial(sweepId, i)).ToList();

    protected static MetricPointRecord Point(long step, double? loss = null) => new()
    {
        Step = step,
        Epoch = (int)(step / 100),
        Values = new Dictionary<string, double> { ["loss"] = loss ?? 0.5 * step, ["accuracy"] = 0.9 },
        Time = T0.AddSeconds(step),
    };

    protected static WorkerRecord Worker(string id) => new()
    {
        Id = id,
        Name = $"worker {id}",
        Device = "cuda",
        Gpus = 1,
        Host = "node-1",
        ConnectedAt = T0,
        LastHeartbeat = T0,
    };

    // Records hold dictionaries and lists, which record equality compares by reference; their
    // JSON is the stored form, so equal JSON is the equality that matters here.
    private static string Json<T>(T value) => value switch
    {
        SweepRecord s => JsonSerializer.Serialize(s, StateJson.Default.SweepRecord),
        TrialRecord t => JsonSerializer.Serialize(t, StateJson.Default.TrialRecord),
        WorkerRecord w => JsonSerializer.Serialize(w, StateJson.Default.WorkerRecord),
        MetricPointRecord m => JsonSerializer.Serialize(m, StateJson.Default.MetricPointRecord),
        _ => throw new ArgumentException(typeof(T).Name),
    };

    protected static void AssertSame<T>(T expected, T? actual) where T : class
    {
        Assert.NotNull(actual);
        Assert.Equal(Json(expected), Json(actual));
    }
}

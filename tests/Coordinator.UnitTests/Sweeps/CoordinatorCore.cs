using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Orchestrator.Coordinator.Checkpoints;
using Orchestrator.Coordinator.Configuration;
using Orchestrator.Coordinator.Domain;
using Orchestrator.Coordinator.Events;
using SweepFiles = Orchestrator.Coordinator.FunctionalTests.Specs;
using Orchestrator.Coordinator.Scheduling;
using Orchestrator.Coordinator.State;
using Orchestrator.Coordinator.State.Sqlite;
using Orchestrator.Coordinator.Sweeps;
using Orchestrator.Coordinator.Workers;
using MsOptions = Microsoft.Extensions.Options.Options;

namespace Orchestrator.Coordinator.UnitTests.Sweeps;

/// <summary>
/// The coordinator's core without a server: the embedded store in a temporary folder, the trial
/// lifecycle, the sweep manager and the scheduler, on a fake clock that only the test moves.
/// Workers are registry connections whose outbox the test reads; a scheduling pass is one call.
/// </summary>
internal sealed class CoordinatorCore : IAsyncDisposable
{
    private readonly string _dir;
    private readonly bool _ownsStore;

    private CoordinatorCore(string dir, IStateStore store, CoordinatorOptions options, bool ownsStore = true, FakeTimeProvider? clock = null)
    {
        _dir = dir;
        _ownsStore = ownsStore;
        Clock = clock ?? new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
        Store = store;
        Options = options;
        var wrapped = MsOptions.Create(options);
        Checkpoints = new CheckpointStore(MsOptions.Create(new CheckpointStoreOptions { Root = Path.Combine(dir, "checkpoints") }));
        var updates = new RecordUpdates(store);
        Trials = new TrialLifecycle(store, updates, Workers, Events, Checkpoints, wrapped, Clock, NullLogger<TrialLifecycle>.Instance);
        Sweeps = new SweepManager(store, updates, Trials, new SweepRuntimes(), Workers, Events, new CheckpointRetention(store, Checkpoints), Checkpoints, wrapped, Clock, NullLogger<SweepManager>.Instance);
        Scheduler = new TrialScheduler(store, Sweeps, Workers, Reasons, new StoreResilience(Clock, NullLogger<StoreResilience>.Instance), wrapped, Clock, NullLogger<TrialScheduler>.Instance);
    }

    public FakeTimeProvider Clock { get; }
    public IStateStore Store { get; }
    public CoordinatorOptions Options { get; }
    public WorkerRegistry Workers { get; } = new();
    public SweepEvents Events { get; } = new();
    public PendingReasons Reasons { get; } = new();
    public CheckpointStore Checkpoints { get; }
    public TrialLifecycle Trials { get; }
    public SweepManager Sweeps { get; }
    public TrialScheduler Scheduler { get; }

    public static async Task<CoordinatorCore> StartAsync(Action<CoordinatorOptions>? configure = null)
    {
        var options = new CoordinatorOptions { LeaseTimeout = TimeSpan.FromSeconds(10), MaxTrialAttempts = 3 };
        configure?.Invoke(options);
        var dir = Path.Combine(Path.GetTempPath(), "orch-core-" + Guid.NewGuid().ToString("N"));
        return new CoordinatorCore(dir, await SqliteStateStore.OpenAsync(dir, CancellationToken.None), options);
    }

    /// <summary>
    /// A core over <paramref name="store"/> (Redis, say), which the caller owns and disposes;
    /// checkpoints go to a temporary folder.
    /// </summary>
    public static CoordinatorCore Over(IStateStore store, Action<CoordinatorOptions>? configure = null)
    {
        var options = new CoordinatorOptions { LeaseTimeout = TimeSpan.FromSeconds(10), MaxTrialAttempts = 3 };
        configure?.Invoke(options);
        return new CoordinatorCore(Path.Combine(Path.GetTempPath(), "orch-core-" + Guid.NewGuid().ToString("N")), store, options, ownsStore: false);
    }

    /// <summary>
    /// A new coordinator over the same store, checkpoints and clock, as after kill -9 and a
    /// restart: nothing in memory survives (workers, searchers, runtimes); its sweeps are recovered.
    /// This core must not be used any more; dispose only the new one.
    /// </summary>
    public async Task<CoordinatorCore> RestartAsync()
    {
        var restarted = new CoordinatorCore(_dir, Store, Options, _ownsStore, Clock);
        await restarted.Sweeps.RecoverAsync(CancellationToken.None);
        return restarted;
    }

    /// <summary>A worker connecting now, with <paramref name="gpus"/> GPUs (a CPU worker without).</summary>
    public WorkerConnection Connect(string id, int gpus = 0)
    {
        var resources = new WorkerResources
        {
            Device = gpus > 0 ? "cuda" : "cpu",
            Gpus = [.. Enumerable.Range(0, gpus).Select(i => new GpuDevice(i))],
        };
        var worker = new WorkerConnection(id, id, resources, Clock.GetUtcNow(), dataEndpoint: $"{id}:9000");
        Workers.Add(worker);
        return worker;
    }

    /// <summary>One scheduling pass at the fake clock's time.</summary>
    public Task PassAsync() => Scheduler.PassAsync(CancellationToken.None);

    /// <summary>Moves time on; workers in <paramref name="alive"/> heartbeat (renew their leases) at the new time.</summary>
    public async Task AdvanceAsync(TimeSpan by, params WorkerConnection[] alive)
    {
        Clock.Advance(by);
        foreach (var w in alive)
        {
            w.LastHeartbeat = Clock.GetUtcNow();
            foreach (var (trial, token) in w.Trials) await Trials.RenewLeaseAsync(w.Id, trial, token, CancellationToken.None);
        }
    }

    public Task<SweepRecord> SubmitAsync(string yaml) => Sweeps.SubmitAsync(yaml, "sweep.yaml", CancellationToken.None);

    public async Task<TrialRecord> TrialAsync(string trialId) => (await Store.GetTrialAsync(trialId, CancellationToken.None))!;

    public async Task<SweepRecord> SweepAsync(string sweepId) => (await Store.GetSweepAsync(sweepId, CancellationToken.None))!;

    public async Task<IReadOnlyList<TrialRecord>> TrialsAsync(string sweepId) => await Store.ListTrialsAsync(sweepId, CancellationToken.None);

    /// <summary>What the worker has been sent since the last call.</summary>
    public static List<WorkerCommand> Sent(WorkerConnection worker)
    {
        var sent = new List<WorkerCommand>();
        while (worker.Outbox.TryRead(out var command)) sent.Add(command);
        return sent;
    }

    /// <summary>The one assignment the worker was sent since the last call.</summary>
    public static TrialAssignment Assigned(WorkerConnection worker) => Assert.IsType<TrialAssignment>(Assert.Single(Sent(worker)));

    /// <summary>A metric report of <paramref name="assignment"/>'s trial under its token.</summary>
    public Task<bool> ReportAsync(TrialAssignment assignment, long step, int epoch, double valAccuracy) =>
        Sweeps.ReportMetricAsync(assignment.TrialId, assignment.FencingToken, new MetricPointRecord
        {
            Step = step,
            Epoch = epoch,
            Values = new Dictionary<string, double> { ["val_accuracy"] = valAccuracy },
            Time = Clock.GetUtcNow(),
        }, CancellationToken.None);

    /// <summary>A worker reports an outcome for its rank of <paramref name="assignment"/>; false when a stale token made it change nothing.</summary>
    public Task<bool> OutcomeAsync(WorkerConnection worker, TrialAssignment assignment, TrialOutcome outcome, string message = "") =>
        Sweeps.TrialOutcomeAsync(worker.Id, assignment.TrialId, assignment.FencingToken, assignment.Rank, outcome, message, CancellationToken.None);

    public async ValueTask DisposeAsync()
    {
        if (_ownsStore && Store is IAsyncDisposable owned) await owned.DisposeAsync();
        try { Directory.Delete(_dir, recursive: true); }
        catch (IOException) { /* a leftover temp folder is harmless */ }
    }

    /// <summary>A grid of <paramref name="trials"/> trials (the functional tests' sweep files); gangs never shrink.</summary>
    public static string Grid(string name, int trials, int parallelTrials = 1, int maxFailedTrials = 3, double? target = null, int workers = 1, int gpusPerWorker = 0) =>
        SweepFiles.Grid(name, SweepFiles.Lrs(trials), parallelTrials, maxFailedTrials, target, workers, minWorkers: workers, gpusPerWorker);
}

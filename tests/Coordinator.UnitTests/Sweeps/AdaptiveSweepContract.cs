using Orchestrator.Coordinator.Domain;
using Orchestrator.Coordinator.State;
using Orchestrator.Coordinator.State.Redis;
using Orchestrator.Coordinator.UnitTests.State;
using Orchestrator.Coordinator.Workers;
using Orchestrator.TestSupport;

namespace Orchestrator.Coordinator.UnitTests.Sweeps;

/// <summary>
/// An ASHA sweep driven through the coordinator's core by a fixed script of reports, with the
/// coordinator restarted at chosen points: between two events, and inside one (the trial's
/// report and the searcher's action stored, the searcher's state not: what kill -9 between the
/// two writes leaves). Every run must end with the same decisions as the run without a restart.
/// Runs on each store.
/// </summary>
public abstract class AdaptiveSweepContract
{
    private const int Trials = 9;
    private const int Epochs = 9;
    private static readonly CancellationToken None = CancellationToken.None;

    /// <summary>9 random trials at once, 9 epochs, ASHA with η = 3 from epoch 1 (rungs at epochs 1 and 3).</summary>
    private const string Sweep = """
        name: asha-restart
        data: { name: synthetic }
        model: { name: simple-cnn }
        trial:
          epochs: 9
          batchSize: 32
        parameters:
          optimizer.lr: { min: 0.001, max: 0.1, distribution: log-uniform }
        search:
          method: random
          maxTrials: 9
          parallelTrials: 9
          seed: 7
          earlyStopping: { method: asha, reductionFactor: 3, minEpochs: 1 }
        objective: { metric: val_accuracy, goal: maximize }
        """;

    /// <summary>A fresh core over a fresh store of the kind under test.</summary>
    private protected abstract Task<CoordinatorCore> StartAsync();

    /// <summary>Trial i's quality: a fixed order unrelated to its index (0.50 … 0.90).</summary>
    private static double Quality(int trial) => 0.5 + 0.05 * (trial * 4 % Trials);

    private static double Objective(int trial, int epoch) => Quality(trial) * (1 - Math.Pow(0.5, epoch));

    /// <summary>The script: every epoch, every trial reports once, in an order that changes with the epoch.</summary>
    private static IReadOnlyList<(int Trial, int Epoch)> Script() =>
        [.. Enumerable.Range(1, Epochs).SelectMany(e => Enumerable.Range(0, Trials).OrderBy(i => (i * 7 + e * 5) % Trials).Select(i => (i, e)))];

    private sealed class Run(CoordinatorCore core, string sweepId, Dictionary<int, (WorkerConnection Worker, TrialAssignment Assignment)> ranks)
    {
        public CoordinatorCore Core { get; set; } = core;
        public string SweepId { get; } = sweepId;
        public Dictionary<int, (WorkerConnection Worker, TrialAssignment Assignment)> Ranks { get; } = ranks;
    }

    private async Task<Run> BeginAsync()
    {
        var core = await StartAsync();
        var workers = Enumerable.Range(0, Trials).Select(i => core.Connect($"w{i}")).ToList();
        var sweep = await core.SubmitAsync(Sweep);
        await core.PassAsync();
        var ranks = new Dictionary<int, (WorkerConnection, TrialAssignment)>();
        foreach (var w in workers)
        {
            var a = CoordinatorCore.Assigned(w);
            ranks[(await core.TrialAsync(a.TrialId)).Index] = (w, a);
        }
        Assert.Equal(Trials, ranks.Count);
        return new Run(core, sweep.Id, ranks);
    }

    /// <summary>Event k of the script: the trial reports its epoch (and completes after the last), unless it has ended.</summary>
    private static async Task StepAsync(Run run, int k)
    {
        var (trial, epoch) = Script()[k];
        var (worker, assignment) = run.Ranks[trial];
        if ((await run.Core.TrialAsync(assignment.TrialId)).IsFinished) return;
        run.Core.Clock.Advance(TimeSpan.FromSeconds(1));
        Assert.True(await run.Core.ReportAsync(assignment, step: epoch * 100, epoch, Objective(trial, epoch)));
        if (epoch < Epochs) return;
        await StoreCheckpointAsync(run.Core, assignment, epoch);
        await run.Core.OutcomeAsync(worker, assignment, TrialOutcome.Completed);
    }

    /// <summary>The worker's upload of the epoch's checkpoint (latest and best), as the gateway notes it.</summary>
    private static async Task StoreCheckpointAsync(CoordinatorCore core, TrialAssignment assignment, int epoch)
    {
        foreach (var slot in new[] { Checkpoints.CheckpointSlot.Latest, Checkpoints.CheckpointSlot.Best })
        {
            var path = core.Checkpoints.PathOf(assignment.SweepId, assignment.TrialId, slot);
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            await File.WriteAllTextAsync(path, $"epoch {epoch}");
        }
        Assert.True(await core.Sweeps.CheckpointStoredAsync(assignment.TrialId, assignment.FencingToken, epoch, None));
    }

    /// <summary>
    /// The script to its end, then orch extend --epochs 27 (with a restart right after it, or a
    /// kill that lost the reopening of the trial that trains on), then that trial trains to 27.
    /// </summary>
    private async Task<string> ExtendAsync(bool restart = false, bool loseReopen = false)
    {
        var run = await BeginAsync();
        try
        {
            var script = Script();
            for (var k = 0; k < script.Count; k++) await StepAsync(run, k);
            Assert.Equal(SweepStatus.Completed, (await run.Core.SweepAsync(run.SweepId)).State);
            var extended = await run.Core.Sweeps.ExtendEpochsAsync(run.SweepId, 27, None);
            Assert.Equal((SweepStatus.Running, 27), (extended!.State, extended.Epochs));
            if (loseReopen)
            {
                var t2 = await run.Core.TrialAsync(run.Ranks[2].Assignment.TrialId);
                Assert.True(await run.Core.Store.TryUpdateTrialAsync(t2 with { State = TrialStatus.Completed, Epochs = Epochs }, t2.Version, None));
            }
            if (restart || loseReopen) run.Core = await run.Core.RestartAsync();
            var pending = (await run.Core.TrialsAsync(run.SweepId)).Where(t => t.State == TrialStatus.Pending).ToList();
            Assert.Equal([(2, 27)], pending.Select(t => (t.Index, t.Epochs)));

            var worker = run.Core.Connect("w-next");
            await run.Core.PassAsync();
            var a = CoordinatorCore.Assigned(worker);
            Assert.Equal((run.Ranks[2].Assignment.TrialId, true), (a.TrialId, a.Resume));
            Assert.Contains("epochs: 27", a.TrialYaml, StringComparison.Ordinal);
            for (var epoch = Epochs + 1; epoch <= 27; epoch++)
                Assert.True(await run.Core.ReportAsync(a, step: epoch * 100, epoch, Objective(2, epoch)));
            await StoreCheckpointAsync(run.Core, a, 27);
            await run.Core.OutcomeAsync(worker, a, TrialOutcome.Completed);
            return await DecisionsAsync(run);
        }
        finally
        {
            await run.Core.DisposeAsync();
        }
    }

    [Fact]
    public async Task Extending_the_epochs_trains_on_the_best_third_of_the_kept_completed_trials_and_a_restart_changes_nothing()
    {
        // Completed at epoch 9: t2 (.90), t4 (.85), t6 (.80), t7 (.55); checkpoints are kept for the
        // best three (t2, t4, t6). The new rung at epoch 9 holds their scores: cut-off at position
        // ⅔·2 of [.80, .85, .90]·c = .8667·c, so only t2 trains on, to epoch 27.
        var decisions = await ExtendAsync();
        Assert.Equal("0:Stopped@1 1:Stopped@1 2:Completed@27 3:Stopped@1 4:Completed@9 5:Stopped@1 6:Completed@9 7:Completed@9 8:Stopped@1 | Completed best t0002 failed 0",
            decisions);
        Assert.Equal(decisions, await ExtendAsync(restart: true));
        Assert.Equal(decisions, await ExtendAsync(loseReopen: true));
    }

    /// <summary>What the sweep decided: each trial's end and epochs, the sweep's state and best trial.</summary>
    private static async Task<string> DecisionsAsync(Run run)
    {
        var trials = await run.Core.TrialsAsync(run.SweepId);
        var sweep = await run.Core.SweepAsync(run.SweepId);
        return string.Join(" ", trials.OrderBy(t => t.Index).Select(t => $"{t.Index}:{t.State}@{t.Epoch}"))
               + $" | {sweep.State} best {sweep.BestTrialId?[(run.SweepId.Length + 1)..]} failed {sweep.FailedTrials}";
    }

    private async Task<string> RunAsync(int? restartBefore = null, int? loseSaveOf = null)
    {
        var run = await BeginAsync();
        try
        {
            var script = Script();
            for (var k = 0; k < script.Count; k++)
            {
                if (k == restartBefore) run.Core = await run.Core.RestartAsync();
                if (k == loseSaveOf)
                {
                    // The event's writes land, the searcher's state of before it stays: then the coordinator dies.
                    var before = (await run.Core.SweepAsync(run.SweepId)).SearcherState;
                    await StepAsync(run, k);
                    var after = await run.Core.SweepAsync(run.SweepId);
                    Assert.True(await run.Core.Store.TryUpdateSweepAsync(after with { SearcherState = before }, after.Version, None));
                    run.Core = await run.Core.RestartAsync();
                    continue;
                }
                await StepAsync(run, k);
            }
            return await DecisionsAsync(run);
        }
        finally
        {
            await run.Core.DisposeAsync();
        }
    }

    [Fact]
    public async Task Asha_stops_the_weak_trials_at_its_rungs_and_the_sweep_ends_with_the_best_trial()
    {
        var run = await BeginAsync();
        try
        {
            var script = Script();
            for (var k = 0; k < script.Count; k++) await StepAsync(run, k);
            var trials = (await run.Core.TrialsAsync(run.SweepId)).OrderBy(t => t.Index).ToList();
            // By hand. Qualities q(i) = 0.5 + 0.05·(4i mod 9): t0 .50, t1 .70, t2 .90, t3 .65, t4 .85,
            // t5 .60, t6 .80, t7 .55, t8 .75; at epoch 1 every score is q/2, so ranks follow q. Epoch 1
            // arrives in the order t7 t2 t6 t1 t5 t0 t4 t8 t3; each is cut at the 2/3 quantile
            // (linear interpolation) of the scores recorded before it at rung 1:
            //   t7 first: goes on; t2 .90 ≥ .55; t6 .80 ≥ .55 + ⅔·.35 = .783; t1 .70 < .833 (of .55 .80 .90): stopped;
            //   t5 .60 < .80: stopped; t0 .50: stopped; t4 .85 ≥ .70 + ⅓·.10 = .733; t8 .75 < .80: stopped; t3 .65: stopped.
            // Rung 2 (epoch 3) in the order t7 t2 t6 t4: t7 first; t2 ≥ .55; t6 .80 ≥ .783; t4 .85 ≥ .833: all go on.
            var stopped = trials.Where(t => t.State == TrialStatus.Stopped).ToList();
            Assert.Equal("0:Stopped@1 1:Stopped@1 2:Completed@9 3:Stopped@1 4:Completed@9 5:Stopped@1 6:Completed@9 7:Completed@9 8:Stopped@1 | Completed best t0002 failed 0",
                await DecisionsAsync(run));
            Assert.All(stopped, t => Assert.StartsWith("stopped early by asha after epoch 1", t.Message, StringComparison.Ordinal));
            // Stopped trials keep their metrics: results at fewer epochs, never failures.
            Assert.All(stopped, t => Assert.Equal(Objective(t.Index, 1), t.BestMetric));
            var sweep = await run.Core.SweepAsync(run.SweepId);
            Assert.Contains("5 stopped early", sweep.Message, StringComparison.Ordinal);
            // 41 epochs trained instead of the 81 of the same sweep without the rule.
            Assert.Equal(41, trials.Sum(t => t.Epoch));
            // Each stopped trial's worker was told to stop after uploading the epoch's checkpoint.
            foreach (var t in stopped)
            {
                var (worker, _) = run.Ranks[t.Index];
                var order = Assert.Single(CoordinatorCore.Sent(worker).OfType<StopOrder>());
                Assert.True(order.AfterCheckpoint);
            }
        }
        finally
        {
            await run.Core.DisposeAsync();
        }
    }

    [Fact]
    public async Task The_same_script_gives_the_same_decisions()
    {
        Assert.Equal(await RunAsync(), await RunAsync());
    }

    [Theory]
    [InlineData(1)]
    [InlineData(5)]
    [InlineData(9)]
    [InlineData(14)]
    [InlineData(30)]
    public async Task A_coordinator_restarted_between_two_reports_makes_the_same_decisions(int k)
    {
        Assert.Equal(await RunAsync(), await RunAsync(restartBefore: k));
    }

    [Theory]
    [InlineData(6)]
    [InlineData(8)]
    [InlineData(12)]
    [InlineData(20)]
    [InlineData(80)]
    public async Task A_coordinator_killed_before_it_saved_the_searcher_replays_the_report_and_makes_the_same_decisions(int k)
    {
        Assert.Equal(await RunAsync(), await RunAsync(loseSaveOf: k));
    }
}

/// <summary>The adaptive sweep contract on the embedded SQLite store.</summary>
public sealed class SqliteAdaptiveSweepTests : AdaptiveSweepContract
{
    private protected override Task<CoordinatorCore> StartAsync() => CoordinatorCore.StartAsync();
}

/// <summary>The adaptive sweep contract on a real redis-server.</summary>
public sealed class RedisAdaptiveSweepTests(RedisServerFixture redis) : AdaptiveSweepContract, IClassFixture<RedisServerFixture>
{
    private protected override async Task<CoordinatorCore> StartAsync() =>
        CoordinatorCore.Over(await RedisStateStore.ConnectAsync(redis.Server.Configuration, $"test:{Guid.NewGuid():N}:", CancellationToken.None).DefaultTimeout());
}

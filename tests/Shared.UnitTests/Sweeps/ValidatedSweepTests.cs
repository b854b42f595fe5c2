using System.Diagnostics;
using Orchestrator.Sweeps;
using Orchestrator.Trials;

namespace Orchestrator.Shared.UnitTests.Sweeps;

public class ValidatedSweepTests
{
    private static string WithParameters(string parameters, string search = "{ method: random }") => $"""
        name: s
        parameters:
        {parameters}
        search: {search}
        """;

    [Fact]
    public void The_example_from_the_spec_parses_with_every_setting()
    {
        var sweep = SweepYaml.Parse("""
            name: fashion-quickstart
            data: { name: fashion-mnist, limitTrain: 6000, limitTest: 1000 }
            model: { name: simple-cnn }
            trial:
              epochs: 2
              batchSize: 128
              optimizer: { name: sgd, momentum: 0.9 }
            parameters:
              optimizer.lr: { values: [0.01, 0.05, 0.1] }
              model.dropout: { min: 0.0, max: 0.5 }
              optimizer.weightDecay: { min: 1.0e-5, max: 1.0e-3, distribution: log-uniform }
              batchSize: { min: 32, max: 256, step: 32, type: int }
              optimizer.name: adamw
            search: { method: random, maxTrials: 20, parallelTrials: 2, maxFailedTrials: 3, seed: 5 }
            objective: { metric: val_accuracy, goal: maximize, target: 0.95 }
            resources: { workers: 2, minWorkers: 1, gpusPerWorker: 1, aggregation: coordinator }
            """);
        Assert.Equal("fashion-quickstart", sweep.Name);
        Assert.Equal("random", sweep.Method);
        Assert.Equal(20, sweep.MaxTrials);
        Assert.Equal(2, sweep.ParallelTrials);
        Assert.Equal(3, sweep.MaxFailedTrials);
        Assert.Equal(5, sweep.Seed);
        Assert.Equal("val_accuracy", sweep.ObjectiveMetric);
        Assert.True(sweep.Maximize);
        Assert.Equal(0.95, sweep.Target);
        Assert.Equal((2, 1, 1), (sweep.Workers, sweep.MinWorkers, sweep.GpusPerWorker));
        Assert.Equal("coordinator", sweep.Aggregation);
        var trial = sweep.BaseTrial;
        Assert.Equal(6000, trial.Data.LimitTrain);
        Assert.Equal(1000, trial.Data.LimitTest);
        Assert.Equal(2, trial.Epochs);
        Assert.Equal("adamw", trial.Optimizer.Name);
        Assert.Equal(["optimizer.lr", "model.dropout", "optimizer.weightDecay", "batchSize"], sweep.Space.Searched.Select(p => p.Path));
    }

    [Fact]
    public void Defaults_fill_every_setting_that_is_left_out()
    {
        var sweep = SweepYaml.Parse("name: minimal\n");
        Assert.Equal("random", sweep.Method);
        Assert.Equal("ring", sweep.Aggregation);
        Assert.Equal(10, sweep.MaxTrials);
        Assert.Equal(1, sweep.ParallelTrials);
        Assert.Equal(3, sweep.MaxFailedTrials);
        Assert.Equal(0, sweep.Seed);
        Assert.Equal("val_accuracy", sweep.ObjectiveMetric);
        Assert.True(sweep.Maximize);
        Assert.Null(sweep.Target);
        Assert.Equal((1, 1, 0), (sweep.Workers, sweep.MinWorkers, sweep.GpusPerWorker));
        Assert.Equal(new TrialSpec().Epochs, sweep.BaseTrial.Epochs);
    }

    [Fact]
    public void Min_workers_defaults_to_workers()
    {
        var sweep = SweepYaml.Parse("name: s\nresources: { workers: 4 }\n");
        Assert.Equal(4, sweep.MinWorkers);
    }

    [Fact]
    public void A_loss_objective_is_minimised_unless_the_goal_says_otherwise()
    {
        Assert.False(SweepYaml.Parse("name: s\nobjective: { metric: val_loss }\n").Maximize);
        Assert.True(SweepYaml.Parse("name: s\nobjective: { metric: val_loss, goal: maximize }\n").Maximize);
    }

    [Fact]
    public void Is_better_follows_the_goal()
    {
        var max = SweepYaml.Parse("name: s\n");
        var min = SweepYaml.Parse("name: s\nobjective: { goal: minimize }\n");
        Assert.True(max.IsBetter(0.9, 0.8));
        Assert.False(max.IsBetter(0.7, 0.8));
        Assert.True(min.IsBetter(0.7, 0.8));
        Assert.False(min.IsBetter(0.9, 0.8));
        Assert.True(max.IsBetter(0.1, null));
        Assert.False(max.IsBetter(double.NaN, null));
    }

    [Theory]
    [InlineData("objective: { metric: val_loss }", "val_loss", false)]
    [InlineData("objective: { metric: train_accuracy, goal: minimize }", "train_accuracy", false)]
    [InlineData("", "val_accuracy", true)]
    public void Every_trial_keeps_its_best_checkpoint_by_the_sweeps_objective(string objective, string metric, bool maximize)
    {
        var sweep = SweepYaml.Parse($$"""
            name: s
            data: { name: synthetic }
            model: { name: simple-cnn }
            parameters:
              optimizer.lr: { values: [0.01, 0.1] }
            search: { method: grid, maxTrials: 2 }
            {{objective}}
            """);
        var trial = sweep.TrialFor(new Dictionary<string, string> { ["optimizer.lr"] = "0.1" });
        Assert.Equal((metric, maximize), (trial.Checkpoint.BestMetric, trial.Checkpoint.MaximizesBest()));
        Assert.Equal(sweep.Maximize, trial.Checkpoint.MaximizesBest());
        // It travels in the trial's YAML to the worker.
        var roundTrip = TrialSpecYaml.Parse(TrialSpecYaml.Serialize(trial), null);
        Assert.Equal((metric, maximize), (roundTrip.Checkpoint.BestMetric, roundTrip.Checkpoint.MaximizesBest()));
    }

    [Fact]
    public void A_best_metric_that_is_not_a_run_metric_is_refused_naming_the_field()
    {
        var e = Assert.Throws<Orchestrator.Specs.SpecException>(() => TrialSpecYaml.Parse("checkpoint: { bestMetric: f1 }\n", "trial.yaml"));
        Assert.Contains("checkpoint.bestMetric", e.Message);
        e = Assert.Throws<Orchestrator.Specs.SpecException>(() => TrialSpecYaml.Parse("checkpoint: { bestGoal: up }\n", "trial.yaml"));
        Assert.Contains("checkpoint.bestGoal", e.Message);
        e = Assert.Throws<Orchestrator.Specs.SpecException>(() => TrialSpecYaml.Parse("epochs: 3\nearlyStopping: { patience: 0 }\n", "trial.yaml"));
        Assert.Contains("trial.yaml:2:", e.Message);
        Assert.Contains("earlyStopping.patience", e.Message);
        Assert.Equal(2, TrialSpecYaml.Parse("earlyStopping: { patience: 2, minDelta: 0.01 }\n", "trial.yaml").EarlyStopping!.Patience);
    }

    [Fact]
    public void Trial_for_sets_each_value_at_its_path_and_keeps_the_rest()
    {
        var sweep = SweepYaml.Parse(SweepYaml.Grid);
        var trial = sweep.TrialFor(new Dictionary<string, string> { ["optimizer.lr"] = "0.05", ["model.dropout"] = "0.25", ["batchSize"] = "32" });
        Assert.Equal(0.05, trial.Optimizer.Lr);
        Assert.Equal(0.25, trial.Model.Dropout);
        Assert.Equal(32, trial.BatchSize);
        Assert.Equal("adamw", trial.Optimizer.Name);     // fixed parameter
        Assert.Equal(600, trial.Data.LimitTrain);        // from data
        Assert.Equal(2, trial.Epochs);                    // from trial
        TrialSpecYaml.Validate(trial);
        Assert.Equal(trial.Optimizer.Lr, TrialSpecYaml.Parse(TrialSpecYaml.Serialize(trial), null).Optimizer.Lr);
    }

    [Fact]
    public void Trial_for_leaves_the_base_trial_untouched()
    {
        var sweep = SweepYaml.Parse(SweepYaml.Grid);
        sweep.TrialFor(new Dictionary<string, string> { ["optimizer.lr"] = "0.1" });
        sweep.BaseTrial.Optimizer.Lr = 42;
        Assert.Equal(new OptimizerSpec().Lr, sweep.BaseTrial.Optimizer.Lr);
    }

    [Fact]
    public void Trial_for_rejects_an_invalid_value_or_an_unknown_path()
    {
        var sweep = SweepYaml.Parse(SweepYaml.Grid);
        var bad = Assert.Throws<Orchestrator.Specs.SpecException>(() => sweep.TrialFor(new Dictionary<string, string> { ["optimizer.lr"] = "-1" }));
        Assert.Equal("optimizer.lr", bad.Field);
        var unknown = Assert.Throws<Orchestrator.Specs.SpecException>(() => sweep.TrialFor(new Dictionary<string, string> { ["optimizer.learningRate"] = "1" }));
        Assert.Equal("optimizer.learningRate", unknown.Field);
    }

    [Fact]
    public void Fixed_values_are_part_of_the_base_trial_and_not_of_the_searched_parameters()
    {
        var sweep = SweepYaml.Parse(WithParameters("  optimizer.name: adam\n  augment.flip: true\n  epochs: 7\n"));
        var trial = sweep.BaseTrial;
        Assert.Equal("adam", trial.Optimizer.Name);
        Assert.True(trial.Augment.Flip);
        Assert.Equal(7, trial.Epochs);
        Assert.Empty(sweep.Space.Searched);
        Assert.Equal(3, sweep.Space.Parameters.Count);
    }

    [Fact]
    public void Numbers_are_kept_as_invariant_canonical_text()
    {
        var sweep = SweepYaml.Parse(WithParameters("  optimizer.weightDecay: { values: [1.0e-5, 0.00050, 1] }\n  batchSize: { values: [064, 128] }\n"));
        Assert.Equal(["1E-05", "0.0005", "1"], sweep.Space.Searched[0].Values);
        Assert.Equal(["64", "128"], sweep.Space.Searched[1].Values);
    }

    [Fact]
    public void A_grid_of_a_billion_points_is_rejected_without_enumerating_it()
    {
        var yaml = WithParameters("""
              optimizer.lr: { min: 0.000001, max: 1.0, step: 0.000001 }
              model.dropout: { values: [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9] }
              batchSize: { min: 1, max: 100, step: 1 }
            """, "{ method: grid, maxTrials: 100000 }");
        var watch = Stopwatch.StartNew();
        var e = SweepYaml.Fails(yaml);
        watch.Stop();
        Assert.Contains("the grid has 1,000,000,000 points, more than this coordinator allows (100000)", e.Message);
        Assert.Equal("parameters", e.Field);
        Assert.True(watch.ElapsedMilliseconds < 500, $"took {watch.ElapsedMilliseconds} ms");
    }

    [Fact]
    public void The_grid_ceiling_comes_from_the_limits()
    {
        var yaml = WithParameters("  batchSize: { min: 1, max: 100, step: 1 }\n", "{ method: grid, maxTrials: 1000 }");
        Assert.Equal(100, SweepYaml.Parse(yaml).MaxTrials);
        var e = SweepYaml.Fails(yaml, new SweepLimits(MaxGridPoints: 50));
        Assert.Contains("the grid has 100 points, more than this coordinator allows (50)", e.Message);
    }

    [Fact]
    public void A_grid_larger_than_max_trials_is_rejected_at_max_trials()
    {
        var e = SweepYaml.Fails(WithParameters("  batchSize: { min: 32, max: 256, step: 32 }\n", "\n  method: grid\n  maxTrials: 5"));
        Assert.Equal("search.maxTrials", e.Field);
        Assert.StartsWith("sweep.yaml:7:", e.Message);
        Assert.Contains("the grid has 8 points but search.maxTrials is 5", e.Message);
    }

    [Fact]
    public void Max_trials_of_a_grid_is_the_grid_size_when_smaller()
    {
        Assert.Equal(9, SweepYaml.Parse(SweepYaml.Grid).MaxTrials);
    }
}

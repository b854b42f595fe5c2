using Orchestrator.Sweeps;

namespace Orchestrator.Shared.UnitTests.Sweeps;

public class ExampleSweepTests
{
    private static string Example(string name)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var path = Path.Combine(dir.FullName, "examples", name);
            if (File.Exists(path)) return path;
        }
        throw new FileNotFoundException($"examples/{name} not found above {AppContext.BaseDirectory}");
    }

    [Fact]
    public void The_quickstart_is_a_small_grid_of_four_short_fashion_mnist_trials()
    {
        var path = Example("quickstart.yaml");
        var sweep = ValidatedSweep.Parse(File.ReadAllText(path), path, new SweepLimits());
        Assert.Equal("grid", sweep.Method);
        Assert.Equal(4, sweep.MaxTrials);
        Assert.Equal(2, sweep.ParallelTrials);
        var trial = sweep.BaseTrial;
        Assert.Equal(("fashion-mnist", 6000, 1000), (trial.Data.Name, trial.Data.LimitTrain, trial.Data.LimitTest));
        Assert.Equal("simple-cnn", trial.Model.Name);
        Assert.Equal(2, trial.Epochs);
        var trials = Searcher.Create(sweep).Start().Cast<CreateTrial>().ToList();
        Assert.Equal(4, trials.Count);
        Assert.All(trials, t => sweep.TrialFor(t.Parameters));
    }

    [Fact]
    public void The_asha_example_judges_random_trials_at_epochs_1_and_3()
    {
        var path = Example("fashion-mnist-asha.yaml");
        var sweep = ValidatedSweep.Parse(File.ReadAllText(path), path, new SweepLimits());
        Assert.Equal(("random", 27, 3), (sweep.Method, sweep.MaxTrials, sweep.ParallelTrials));
        var rule = sweep.EarlyStopping!;
        Assert.Equal(("asha", 3, 1, 9), (rule.Method, rule.ReductionFactor, rule.MinEpochs, rule.MaxEpochs));
        Assert.Equal([[1, 3]], rule.BracketMilestones());
        var trials = Searcher.Create(sweep).Start().Cast<CreateTrial>().ToList();
        Assert.Equal(27, trials.Count);
        Assert.All(trials, t => sweep.TrialFor(t.Parameters));
    }

    [Fact]
    public void The_tpe_example_searches_three_parameters_two_trials_at_a_time()
    {
        var path = Example("fashion-mnist-tpe.yaml");
        var sweep = ValidatedSweep.Parse(File.ReadAllText(path), path, new SweepLimits());
        Assert.Equal(("tpe", 30, 2), (sweep.Method, sweep.MaxTrials, sweep.ParallelTrials));
        Assert.Equal((10, 24, 0.25), (sweep.Tpe!.StartupTrials, sweep.Tpe.Candidates, sweep.Tpe.Gamma));
        Assert.Equal(["optimizer.lr", "optimizer.weightDecay", "model.dropout"], sweep.Space.Searched.Select(p => p.Path));
        var trials = Searcher.Create(sweep).Start().Cast<CreateTrial>().ToList();
        Assert.Equal(2, trials.Count);
        Assert.All(trials, t => sweep.TrialFor(t.Parameters));
    }

    [Fact]
    public void The_imagenet_style_example_searches_the_learning_rate_and_the_precision_with_loader_threads()
    {
        var path = Example("imagenet-style-sweep.yaml");
        var sweep = ValidatedSweep.Parse(File.ReadAllText(path), path, new SweepLimits());
        Assert.Equal(["optimizer.lr", "precision"], sweep.Space.Searched.Select(p => p.Path));
        var trial = sweep.BaseTrial;
        Assert.Equal(("imagefolder", 8, "resnet50", "bf16"), (trial.Data.Name, trial.Data.LoaderThreads, trial.Model.Name, trial.Precision));
        var trials = Searcher.Create(sweep).Start().Cast<CreateTrial>().ToList();
        Assert.Equal(16, trials.Count);
        // Both precisions are drawn, and each trial's spec carries its own.
        Assert.Equal(["bf16", "fp32"], trials.Select(t => sweep.TrialFor(t.Parameters).Precision).Distinct().Order());
    }
}

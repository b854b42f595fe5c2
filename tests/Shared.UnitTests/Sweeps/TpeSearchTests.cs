using Orchestrator.Sweeps;
using Orchestrator.Sweeps.Tpe;

namespace Orchestrator.Shared.UnitTests.Sweeps;

public class TpeSearchTests
{
    /// <summary>A TPE sweep over a log-uniform learning rate, a dropout range and a categorical optimizer.</summary>
    private static ValidatedSweep Sweep(string search = "maxTrials: 12, parallelTrials: 2, seed: 5", string tpe = "{ startupTrials: 4 }", string extra = "") =>
        SweepYaml.Parse($$"""
        name: t
        parameters:
          optimizer.lr: { min: 1.0e-4, max: 1.0, distribution: log-uniform }
          model.dropout: { min: 0.0, max: 0.5 }
          optimizer.name: { values: [sgd, adamw, adam] }
        search: { method: tpe, {{search}}, tpe: {{tpe}} }
        {{extra}}
        """);

    /// <summary>A categorical-only space of ten choices: where the model sends a trial is easy to see.</summary>
    private static ValidatedSweep Choices(string search) => SweepYaml.Parse($$"""
        name: c
        parameters:
          batchSize: { values: [8, 16, 24, 32, 40, 48, 56, 64, 72, 80] }
        search: { method: tpe, {{search}} }
        """);

    private static SearchObservation Observation(double objective, string lr = "0.01") =>
        new(new Dictionary<string, string> { ["optimizer.lr"] = lr }, objective, 1, TrialExit.Completed);

    private static CreateTrial Created(IReadOnlyList<SearchAction> actions) => Assert.IsType<CreateTrial>(Assert.Single(actions));

    /// <summary>Drives a sweep to its end: each created trial reports <paramref name="objective"/> of its parameters for 2 epochs and completes.</summary>
    private static List<CreateTrial> Drive(Searcher searcher, Func<IReadOnlyDictionary<string, string>, double> objective)
    {
        var trials = new List<CreateTrial>();
        var queue = new Queue<CreateTrial>(searcher.Start().OfType<CreateTrial>());
        while (queue.TryDequeue(out var trial))
        {
            trials.Add(trial);
            var y = objective(trial.Parameters);
            searcher.OnValidation(trial.Index, 1, y - 0.1);
            searcher.OnValidation(trial.Index, 2, y);
            foreach (var next in searcher.OnTrialExited(trial.Index, succeeded: true).OfType<CreateTrial>()) queue.Enqueue(next);
        }
        return trials;
    }

    [Fact]
    public void Of_eight_results_with_gamma_a_quarter_the_two_best_are_good()
    {
        double[] objectives = [0.5, 0.9, 0.1, double.NaN, 0.7, 0.95, 0.3, 0.6];
        var observations = objectives.Select((y, i) => Observation(y, $"0.0{i + 1}")).ToList();

        var (good, bad) = TpeSearch.Split(observations, 0.25, maximize: true);
        Assert.Equal([0.95, 0.9], good.Select(o => o.Objective));
        Assert.Equal(6, bad.Count);
        Assert.True(double.IsNaN(bad[^1].Objective));   // a diverged trial ranks last

        (good, _) = TpeSearch.Split(observations, 0.25, maximize: false);
        Assert.Equal([0.1, 0.3], good.Select(o => o.Objective));

        (good, bad) = TpeSearch.Split([Observation(0.4)], 0.25, maximize: true);
        Assert.Single(good);
        Assert.Empty(bad);
        Assert.Equal(3, TpeSearch.Split([.. Enumerable.Range(0, 30).Select(i => Observation(i))], 0.1, true).Good.Count);
    }

    [Fact]
    public void It_keeps_parallel_trials_outstanding_and_creates_one_more_as_each_exits()
    {
        var s = Searcher.Create(Sweep("maxTrials: 5, parallelTrials: 2, seed: 1", "{ startupTrials: 2 }"));
        Assert.Equal([0, 1], s.Start().Cast<CreateTrial>().Select(t => t.Index));
        s.OnValidation(0, 1, 0.5);
        Assert.Equal(2, Created(s.OnTrialExited(0, true)).Index);
        Assert.Equal(3, Created(s.OnTrialExited(1, false)).Index);   // a failed trial is replaced too
        s.OnValidation(2, 1, 0.7);
        var stopped = s.Stop(2, "user");
        Assert.IsType<StopTrial>(stopped[0]);
        Assert.Equal(4, Assert.IsType<CreateTrial>(Assert.Single(stopped, a => a is CreateTrial)).Index);
        Assert.Empty(s.OnTrialExited(3, true));
        var end = Assert.IsType<ShutdownSearch>(Assert.Single(s.OnTrialExited(4, true)));
        Assert.StartsWith("all 5 trials ended, 1 failed, 1 stopped early", end.Reason);
    }

    [Fact]
    public void The_same_seed_and_the_same_events_give_the_same_trials()
    {
        static double Objective(IReadOnlyDictionary<string, string> p) => -Math.Abs(Math.Log10(double.Parse(p["optimizer.lr"], System.Globalization.CultureInfo.InvariantCulture)) + 2);
        var a = Drive(Searcher.Create(Sweep()), Objective);
        var b = Drive(Searcher.Create(Sweep()), Objective);
        Assert.Equal(12, a.Count);
        Assert.Equal(a, b);
        var other = Drive(Searcher.Create(Sweep("maxTrials: 12, parallelTrials: 2, seed: 6")), Objective);
        Assert.NotEqual(a.Select(t => t.Parameters["optimizer.lr"]), other.Select(t => t.Parameters["optimizer.lr"]));
    }

    [Theory]
    [InlineData(3)]
    [InlineData(8)]
    [InlineData(15)]
    public void A_searcher_restored_mid_sweep_makes_the_same_decisions(int restartAfter)
    {
        // Events: each trial reports two epochs and exits; trial 5 is stopped early and trial 7 fails.
        var events = new List<Func<Searcher, int, IReadOnlyList<SearchAction>>>();
        for (var i = 0; i < 12; i++)
        {
            var index = i;
            events.Add((s, _) => s.OnValidation(index, 1, 0.1 * (index % 5)));
            events.Add(index switch
            {
                5 => (s, _) => s.Stop(index, "user"),
                7 => (s, _) => s.OnTrialExited(index, succeeded: false),
                _ => (s, _) => s.OnValidation(index, 2, 0.1 * (index % 5) + 0.05),
            });
            if (index is not (5 or 7)) events.Add((s, _) => s.OnTrialExited(index, succeeded: true));
        }
        static List<string> Run(Searcher s, IEnumerable<Func<Searcher, int, IReadOnlyList<SearchAction>>> steps) =>
            [.. steps.Select(e => string.Join("; ", e(s, 0).Select(a => a.ToString())))];

        var uninterrupted = Searcher.Create(Sweep());
        var expected = Run(uninterrupted, [(s, _) => s.Start(), .. events]);
        var before = Searcher.Create(Sweep());
        var head = Run(before, [(s, _) => s.Start(), .. events.Take(restartAfter)]);
        var after = Searcher.Restore(Sweep(), before.SaveState());
        var tail = Run(after, events.Skip(restartAfter));

        Assert.True(uninterrupted.ReportsChangeState);
        Assert.Equal(expected, [.. head, .. tail]);
        Assert.Equal(uninterrupted.SaveState(), after.SaveState());
        Assert.Contains("all 12 trials ended", expected[^1]);
    }

    [Fact]
    public void After_start_up_it_samples_near_the_optimum_more_than_random_search()
    {
        // A 1-D objective with its optimum at lr = 0.01 (log10 lr = -2), over [1e-4, 1].
        static double Distance(IReadOnlyDictionary<string, string> p) =>
            Math.Abs(Math.Log10(double.Parse(p["optimizer.lr"], System.Globalization.CultureInfo.InvariantCulture)) + 2);
        static ValidatedSweep OneD(string method) => SweepYaml.Parse($$"""
            name: one-d
            parameters:
              optimizer.lr: { min: 1.0e-4, max: 1.0, distribution: log-uniform }
            search: { method: {{method}}, maxTrials: 60, seed: 11 }
            """);

        var tpe = Drive(Searcher.Create(OneD("tpe")), p => -Distance(p));
        var random = Drive(Searcher.Create(OneD("random")), p => -Distance(p));
        Assert.Equal(10, OneD("tpe").Tpe!.StartupTrials);

        static double Median(IEnumerable<double> xs)
        {
            var s = xs.Order().ToArray();
            return (s[(s.Length - 1) / 2] + s[s.Length / 2]) / 2;
        }
        var tpeDistance = Median(tpe.Skip(10).Select(t => Distance(t.Parameters)));
        var randomDistance = Median(random.Skip(10).Select(t => Distance(t.Parameters)));
        // Random search's median distance is about 1 decade; TPE's model-based trials cluster near -2.
        Assert.True(tpeDistance < randomDistance / 3, $"TPE median distance {tpeDistance:F3} vs random {randomDistance:F3}");
        Assert.True(tpe.Skip(10).Count(t => Distance(t.Parameters) < 0.25) >= 25);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Stopped_and_completed_trials_are_results_and_failed_ones_are_not(bool stop)
    {
        var sweep = Choices("maxTrials: 4, seed: 2, tpe: { startupTrials: 1 }");
        var s = Searcher.Create(sweep);
        var first = Created(s.Start());
        s.OnValidation(0, 1, 0.9);
        var next = stop ? Assert.IsType<CreateTrial>(s.Stop(0, "user")[1]) : Created(s.OnTrialExited(0, true));
        // The one good result pulls the next trial to its value: the only choice with l(x) > g(x).
        Assert.Equal(first.Parameters["batchSize"], next.Parameters["batchSize"]);

        // A failed trial is no result: the next trial is random, as if nothing had happened.
        var failed = Searcher.Create(sweep);
        failed.Start();
        var afterFailure = Created(failed.OnTrialExited(0, false));
        var random = new SplitMix64(2);
        sweep.Space.Sample(random);
        Assert.Equal(sweep.Space.Sample(random), afterFailure.Parameters);
    }

    [Fact]
    public void A_warm_start_that_covers_the_start_up_makes_the_first_trial_model_based()
    {
        var sweep = Choices("maxTrials: 4, seed: 2, warmStartFrom: sw-1, tpe: { startupTrials: 2 }");
        Assert.Equal("sw-1", sweep.WarmStartFrom);
        SearchObservation Prior(string batch, double objective, TrialExit exit = TrialExit.Completed) =>
            new(new Dictionary<string, string> { ["batchSize"] = batch }, objective, 2, exit);

        var warm = Searcher.Create(sweep, [Prior("72", 0.91), Prior("8", 0.5, TrialExit.Stopped)]);
        Assert.Equal("72", Created(warm.Start()).Parameters["batchSize"]);

        // Without it (or with only failed results), the first trial is random start-up.
        var cold = Created(Searcher.Create(sweep, [Prior("72", 0.91, TrialExit.Failed)]).Start());
        Assert.Equal(sweep.Space.Sample(new SplitMix64(2)), cold.Parameters);
    }

    [Fact]
    public void Extend_creates_more_trials_one_parallel_batch_at_a_time()
    {
        var s = Searcher.Create(Sweep("maxTrials: 2, parallelTrials: 2, seed: 1", "{ startupTrials: 1 }"));
        Assert.Equal(2, s.Start().Count);
        s.OnValidation(0, 1, 0.3);
        s.OnValidation(1, 1, 0.6);
        Assert.Empty(s.OnTrialExited(0, true));
        Assert.IsType<ShutdownSearch>(Assert.Single(s.OnTrialExited(1, true)));

        Assert.Equal([2, 3], s.Extend(3).Cast<CreateTrial>().Select(t => t.Index));
        Assert.Equal(4, Created(s.OnTrialExited(2, true)).Index);
        Assert.Empty(s.OnTrialExited(3, true));
        Assert.IsType<ShutdownSearch>(Assert.Single(s.OnTrialExited(4, true)));
    }

    [Fact]
    public void Integer_stepped_and_log_integer_parameters_stay_in_their_range()
    {
        var sweep = SweepYaml.Parse("""
            name: ints
            parameters:
              batchSize: { min: 16, max: 512, distribution: log-uniform, type: int }
              epochs: { min: 1, max: 9 }
              model.dropout: { min: 0.0, max: 0.5, step: 0.05 }
            search: { method: tpe, maxTrials: 40, seed: 4, tpe: { startupTrials: 5 } }
            """);
        var trials = Drive(Searcher.Create(sweep), p => -Math.Abs(int.Parse(p["batchSize"], System.Globalization.CultureInfo.InvariantCulture) - 100));
        Assert.Equal(40, trials.Count);
        Assert.All(trials, t => sweep.TrialFor(t.Parameters));
        Assert.All(trials, t => Assert.InRange(int.Parse(t.Parameters["batchSize"], System.Globalization.CultureInfo.InvariantCulture), 16, 512));
        Assert.All(trials, t => Assert.Contains(t.Parameters["model.dropout"], Enumerable.Range(0, 11).Select(k => Orchestrator.Sweeps.TrialField.FormatNumber((double)(k * 0.05m)))));
    }

    [Fact]
    public void Defaults_fill_in_and_shrink_the_start_up_for_a_small_budget()
    {
        static TpeSettings? Tpe(string search) =>
            SweepYaml.Parse("name: d\nparameters:\n  model.dropout: { min: 0.0, max: 0.5 }\nsearch: " + search + "\n").Tpe;
        var big = Tpe("{ method: tpe, maxTrials: 40 }")!;
        Assert.Equal((10, 24, 0.25), (big.StartupTrials, big.Candidates, big.Gamma));
        Assert.Equal(3, Tpe("{ method: tpe, maxTrials: 6 }")!.StartupTrials);
        Assert.Null(Tpe("{ method: random }"));
    }

    [Theory]
    [InlineData("parameters:\n  model.dropout: { min: 0.0, max: 0.5 }\nsearch:\n  method: tpe\n  tpe: { gamma: 1.5 }\n", "search.tpe.gamma", 6, "must be in (0, 1)")]
    [InlineData("parameters:\n  model.dropout: { min: 0.0, max: 0.5 }\nsearch:\n  method: tpe\n  tpe: { gamma: 0 }\n", "search.tpe.gamma", 6, "must be in (0, 1)")]
    [InlineData("parameters:\n  model.dropout: { min: 0.0, max: 0.5 }\nsearch:\n  method: tpe\n  tpe:\n    candidates: 0\n", "search.tpe.candidates", 7, "must be ≥ 1")]
    [InlineData("parameters:\n  model.dropout: { min: 0.0, max: 0.5 }\nsearch:\n  method: tpe\n  tpe:\n    startupTrials: 0\n", "search.tpe.startupTrials", 7, "must be ≥ 1")]
    [InlineData("parameters:\n  model.dropout: { min: 0.0, max: 0.5 }\nsearch:\n  method: tpe\n  maxTrials: 5\n  tpe:\n    startupTrials: 6\n", "search.tpe.startupTrials", 8, "6 leaves no trial to the model: it must be ≤ search.maxTrials (5)")]
    [InlineData("parameters:\n  model.dropout: { min: 0.0, max: 0.5 }\nsearch:\n  method: random\n  tpe: { gamma: 0.2 }\n", "search.tpe", 6, "applies to search.method tpe, not random")]
    [InlineData("parameters:\n  optimizer.lr: { values: [0.01, 0.1, 1] }\n  model.dropout: { values: [0.0, 0.5] }\nsearch:\n  method: tpe\n  maxTrials: 20\n", "search.method", 6,
                "tpe needs a continuous parameter or at least maxTrials combinations; this space has 6 points and maxTrials is 20")]
    [InlineData("parameters:\n  optimizer.lr: 0.1\nsearch:\n  method: tpe\n", "search.method", 5, "tpe needs at least one searched parameter")]
    public void Impossible_tpe_settings_are_one_error_naming_the_field(string body, string field, int line, string problem)
    {
        var e = SweepYaml.Fails("name: s\n" + body);
        Assert.Equal(field, e.Field);
        Assert.StartsWith($"sweep.yaml:{line}:", e.Message);
        Assert.Contains($"{field}: {problem}", e.Message);
    }

    [Fact]
    public void Trials_stopped_by_the_early_stopping_rule_are_results_and_their_slots_are_refilled()
    {
        var sweep = SweepYaml.Parse("""
            name: asha
            trial: { epochs: 9 }
            parameters:
              optimizer.lr: { min: 1.0e-4, max: 1.0, distribution: log-uniform }
            search: { method: tpe, maxTrials: 12, parallelTrials: 3, seed: 8, tpe: { startupTrials: 3 }, earlyStopping: { method: asha, minEpochs: 1 } }
            """);
        var s = Searcher.Create(sweep);
        var running = new List<CreateTrial>(s.Start().OfType<CreateTrial>());
        var created = running.Count;
        var stopped = 0;
        ShutdownSearch? end = null;
        while (running.Count > 0)
        {
            var trial = running[0];
            running.RemoveAt(0);
            var y = 1 - Math.Abs(Math.Log10(double.Parse(trial.Parameters["optimizer.lr"], System.Globalization.CultureInfo.InvariantCulture)) + 2) / 4;
            var actions = new List<SearchAction>();
            for (var epoch = 1; epoch <= 9 && !actions.OfType<StopTrial>().Any(); epoch++) actions.AddRange(s.OnValidation(trial.Index, epoch, y));
            if (actions.OfType<StopTrial>().Any()) stopped++;
            else actions.AddRange(s.OnTrialExited(trial.Index, succeeded: true));
            running.AddRange(actions.OfType<CreateTrial>());
            created += actions.OfType<CreateTrial>().Count();
            end ??= actions.OfType<ShutdownSearch>().SingleOrDefault();
        }
        Assert.Equal(12, created);
        Assert.True(stopped > 0);
        Assert.NotNull(end);
        Assert.Contains($"{stopped} stopped early", end.Reason);
    }
}

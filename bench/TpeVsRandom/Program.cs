// TPE against random search on synthetic objectives with known optima: for each objective and
// seed, one sweep of N trials per method is driven through Searcher exactly as the coordinator
// drives it (Start, one objective report per trial, exit, the trials the method creates next), the
// objective computed from the trial's parameters. Both methods get the same seeds and budget. The
// table shows the median best (lower is better, every objective is minimised), the median regret
// (best − optimum) ratio, and on how many seeds TPE's best is strictly lower than random's.
//
//   dotnet run -c Release --project bench/TpeVsRandom -- [--seeds 50] [--trials 40] [--parallel 1]
using System.Globalization;
using Orchestrator.Bench.TpeVsRandom;
using Orchestrator.Sweeps;

var seeds = 50;
var trials = 40;
var parallel = 1;
for (var i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--seeds": seeds = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--trials": trials = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--parallel": parallel = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
        default:
            Console.Error.WriteLine("usage: TpeVsRandom [--seeds 50] [--trials 40] [--parallel 1]");
            return 2;
    }
}

Console.WriteLine($"{seeds} seeds × {trials} trials per method, parallelTrials {parallel}, tpe defaults (startupTrials {Math.Min(10, Math.Max(1, trials / 2))}, candidates 24, gamma 0.25)");
Console.WriteLine();
Console.WriteLine("| objective | optimum | random median best | TPE median best | median regret TPE / random | TPE wins |");
Console.WriteLine("|---|---|---|---|---|---|");
foreach (var objective in Objectives.All)
{
    var random = new double[seeds];
    var tpe = new double[seeds];
    for (var seed = 0; seed < seeds; seed++)
    {
        random[seed] = BestOf(objective, "random", seed);
        tpe[seed] = BestOf(objective, "tpe", seed);
    }
    var wins = Enumerable.Range(0, seeds).Count(s => tpe[s] < random[s]);
    double mr = Median(random), mt = Median(tpe);
    var ratio = (mt - objective.Optimum) / (mr - objective.Optimum);
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"| {objective.Name} | {objective.Optimum:G6} | {mr:G4} | {mt:G4} | {ratio:F2} | {wins}/{seeds} |"));
}
return 0;

double BestOf(Objective objective, string method, int seed)
{
    var yaml = $"""
        name: {objective.Name}
        parameters:
        {objective.Parameters}
        search: {"{"} method: {method}, maxTrials: {trials}, parallelTrials: {parallel}, seed: {seed} {"}"}
        objective: {"{"} metric: val_loss, goal: minimize {"}"}
        """;
    var searcher = Searcher.Create(ValidatedSweep.Parse(yaml, objective.Name + ".yaml", SweepLimits.Default));
    var best = double.PositiveInfinity;
    var pending = new Queue<CreateTrial>(searcher.Start().OfType<CreateTrial>());
    // Trials run parallelTrials at a time and exit in creation order: the method sees each result
    // only once that trial exits, as it would in a sweep.
    while (pending.TryDequeue(out var trial))
    {
        var y = objective.Evaluate(trial.Parameters);
        best = Math.Min(best, y);
        searcher.OnValidation(trial.Index, 1, y);
        foreach (var next in searcher.OnTrialExited(trial.Index, succeeded: true).OfType<CreateTrial>()) pending.Enqueue(next);
    }
    return best;
}

static double Median(double[] xs)
{
    var s = xs.Order().ToArray();
    return (s[(s.Length - 1) / 2] + s[s.Length / 2]) / 2;
}

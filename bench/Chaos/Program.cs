// The chaos matrix: for each fault kind, runs of a small sweep pair (a grid of two one-worker
// trials and one data-parallel trial on two workers) on a real redis-server, a coordinator
// process and worker processes, during which a target of that kind is SIGKILLed at random
// moments and started again, again and again. After each run: every trial completed exactly
// once, metric steps contiguous without duplicates, no stall longer than 60 s, the best
// checkpoint evaluates to its reported metric (Harness/ChaosChecks.cs).
//
//   dotnet run -c Release --project bench/Chaos -- [--kinds worker,coordinator,redis[,mixed]] [--runs 20]
//       [--seed N] [--kills 3] [--workers 3] [--epochs 2] [--train 500] [--test 200] [--verbose] [--keep-logs]
//
// Run i of every kind uses seed N+i (printed on its line): `--kinds KIND --runs 1 --seed S`
// replays the same targets, moments and downtimes. --verbose prints each kill. A failed run keeps
// its folder, with every process's output under logs/, and names it on its line; --keep-logs
// keeps them for every run.
using System.Globalization;
using Orchestrator.Bench.Chaos;

var kinds = new[] { FaultKind.Worker, FaultKind.Coordinator, FaultKind.Redis };
var runs = 20;
var seed = Environment.TickCount & 0xFFFF;
var shape = new ChaosOptions { Kind = FaultKind.Worker, Seed = 0 };
var verbose = false;
for (var i = 0; i < args.Length; i++)
{
    string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
    int Int() => int.Parse(Next(), CultureInfo.InvariantCulture);
    switch (args[i])
    {
        case "--kinds": kinds = Next().Split(',').Select(k => Enum.Parse<FaultKind>(k, ignoreCase: true)).ToArray(); break;
        case "--runs": runs = Int(); break;
        case "--seed": seed = Int(); break;
        case "--kills": shape = shape with { MaxKills = Int() }; break;
        case "--workers": shape = shape with { Workers = Int() }; break;
        case "--epochs": shape = shape with { Epochs = Int() }; break;
        case "--train": shape = shape with { LimitTrain = Int() }; break;
        case "--test": shape = shape with { LimitTest = Int() }; break;
        case "--verbose": verbose = true; break;
        case "--keep-logs": shape = shape with { KeepLogs = true }; break;
        default: throw new ArgumentException($"unknown argument {args[i]}");
    }
}

Console.WriteLine($"chaos matrix: seed {seed}, {runs} runs per kind ({string.Join(", ", kinds).ToLowerInvariant()}), up to {shape.MaxKills} kills a run, " +
                  $"{shape.Workers} workers, {shape.Epochs} epochs on {shape.LimitTrain} images, {Environment.ProcessorCount} cores");
var results = new List<ChaosResult>();
foreach (var kind in kinds)
{
    for (var r = 0; r < runs; r++)
    {
        var options = shape with { Kind = kind, Seed = seed + r };
        var result = await ChaosRun.RunAsync(options, verbose ? Console.WriteLine : null, CancellationToken.None);
        results.Add(result);
        Console.WriteLine(result.Line);
    }
}

Console.WriteLine();
Console.WriteLine("| fault | runs | passed | kills | extra attempts | completed once | contiguous steps | no stall > 60 s | best checkpoint | median run s | longest stall s |");
Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|---|");
foreach (var group in results.GroupBy(r => r.Options.Kind))
{
    var n = group.Count();
    string Held(Invariant v) => $"{group.Count(r => r.Violations.All(x => x.Invariant != v))}/{n}";
    var durations = group.Select(r => r.Duration.TotalSeconds).Order().ToArray();
    Console.WriteLine(FormattableString.Invariant(
        $"| {group.Key.ToString().ToLowerInvariant()} | {n} | {group.Count(r => r.Passed)} | {group.Sum(r => r.Kills)} | {group.Sum(r => r.ExtraAttempts)} | {Held(Invariant.CompletedOnce)} | {Held(Invariant.ContiguousSteps)} | {Held(Invariant.NoStall)} | {Held(Invariant.BestCheckpoint)} | {durations[durations.Length / 2]:F0} | {group.Max(r => r.LongestStall.TotalSeconds):F0} |"));
}
return results.All(r => r.Passed) ? 0 : 1;

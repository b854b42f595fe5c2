// Adaptive search on Fashion-MNIST with the small CNN, side by side in one run, with the sweep's
// own Searcher deciding (the coordinator's code path without the network):
//   A. random search against random search + ASHA (η = 3, first rung at epoch 1) over a
//      log-uniform learning rate, a dropout range and a log-uniform weight decay. The same seed
//      draws the same trials for both; every trial is trained once to its last epoch and each
//      method sees the epochs it would have trained (training is deterministic per trial), so
//      ASHA's stops cost exactly the epochs it would not have trained.
//   B. TPE against random search on the same space, shorter trials, several seeds: the median
//      best after the whole budget.
// Trials run `--parallel` at a time at equal speed: reports reach the searcher in the order
// parallel workers would send them.
//
//   dotnet run -c Release --project bench/AdaptiveSearch -- [--images 3000] [--test 1000]
//       [--trials 12] [--epochs 9] [--parallel 3] [--seeds 1,2] [--tpe-trials 12] [--tpe-epochs 2] [--tpe-seeds 1,2,3]
//       [--parts A,B]
using System.Diagnostics;
using System.Globalization;
using Orchestrator.Bench.AdaptiveSearch;
using Orchestrator.Data;
using Orchestrator.Sweeps;
using Orchestrator.Trials;
using Orchestrator.Worker.Native;
using TorchSharp;

var inv = CultureInfo.InvariantCulture;
string? Arg(string name) => Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : null;
int[] Ints(string? s, string fallback) => [.. (s ?? fallback).Split(',').Select(x => int.Parse(x, inv))];
var images = int.Parse(Arg("--images") ?? "3000", inv);
var test = int.Parse(Arg("--test") ?? "1000", inv);
var trials = int.Parse(Arg("--trials") ?? "12", inv);
var epochs = int.Parse(Arg("--epochs") ?? "9", inv);
var parallel = int.Parse(Arg("--parallel") ?? "3", inv);
var seeds = Ints(Arg("--seeds"), "1,2");
var tpeTrials = int.Parse(Arg("--tpe-trials") ?? "12", inv);
var tpeEpochs = int.Parse(Arg("--tpe-epochs") ?? "2", inv);
var tpeSeeds = Ints(Arg("--tpe-seeds"), "1,2,3");
var parts = (Arg("--parts") ?? "A,B").Split(',');
if (!parts.Contains("A")) seeds = [];
if (!parts.Contains("B")) tpeSeeds = [];

TorchRuntime.Initialize();
var trainer = new CurveTrainer(images, test);
Console.WriteLine(string.Create(inv,
    $"cores {Environment.ProcessorCount}, torch threads {torch.get_num_threads()}, fashion-mnist {images:N0} training / {test:N0} validation images, simple-cnn, batch 64, {parallel} trials at a time"));
Console.WriteLine();

if (seeds.Length > 0)
{
    Console.WriteLine(string.Create(inv, $"A. random vs random + ASHA (η 3, minEpochs 1): {trials} trials of {epochs} epochs"));
    Console.WriteLine();
    Console.WriteLine("| seed | random best | ASHA best | difference (points) | epochs random | epochs ASHA | epoch ratio | stopped |");
    Console.WriteLine("|---|---|---|---|---|---|---|---|");
    foreach (var seed in seeds)
    {
        var clock = Stopwatch.StartNew();
        var random = Sweeps.Parse(Sweeps.Yaml("random", trials, epochs, parallel, seed, images, test, earlyStopping: null));
        var asha = Sweeps.Parse(Sweeps.Yaml("random", trials, epochs, parallel, seed, images, test, earlyStopping: "{ method: asha, reductionFactor: 3, minEpochs: 1 }"));
        var curves = new Dictionary<string, double[]>(StringComparer.Ordinal);
        double[] Curve(ValidatedSweep sweep, IReadOnlyDictionary<string, string> p)
        {
            var key = string.Join(";", p.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key}={kv.Value}"));
            if (!curves.TryGetValue(key, out var curve)) curves[key] = curve = trainer.Train(sweep.TrialFor(p));
            return curve;
        }
        var r = Simulation.Run(Searcher.Create(random), parallel, p => Curve(random, p));
        var a = Simulation.Run(Searcher.Create(asha), parallel, p => Curve(asha, p));
        if (curves.Count != trials) throw new InvalidOperationException($"ASHA drew other trials than random search ({curves.Count} distinct)");
        Console.WriteLine(string.Create(inv,
            $"| {seed} | {r.Best:F4} | {a.Best:F4} | {(a.Best - r.Best) * 100:+0.00;-0.00;0.00} | {r.Epochs} | {a.Epochs} | {(double)a.Epochs / r.Epochs:F2} | {a.Stopped} of {trials} |"));
        Console.Error.WriteLine(string.Create(inv, $"seed {seed}: {clock.Elapsed.TotalSeconds:F0} s"));
    }
}

if (tpeSeeds.Length > 0)
{
    Console.WriteLine();
    Console.WriteLine(string.Create(inv, $"B. TPE vs random: {tpeTrials} trials of {tpeEpochs} epochs, best validation accuracy after the whole budget"));
    Console.WriteLine();
    Console.WriteLine("| seed | random best | TPE best | TPE − random (points) |");
    Console.WriteLine("|---|---|---|---|");
    List<double> randomBests = [], tpeBests = [];
    foreach (var seed in tpeSeeds)
    {
        var random = Sweeps.Parse(Sweeps.Yaml("random", tpeTrials, tpeEpochs, parallel, seed, images, test, earlyStopping: null));
        var tpe = Sweeps.Parse(Sweeps.Yaml("tpe", tpeTrials, tpeEpochs, parallel, seed, images, test, earlyStopping: null));
        var r = Simulation.Run(Searcher.Create(random), parallel, p => trainer.Train(random.TrialFor(p)));
        var t = Simulation.Run(Searcher.Create(tpe), parallel, p => trainer.Train(tpe.TrialFor(p)));
        randomBests.Add(r.Best);
        tpeBests.Add(t.Best);
        Console.WriteLine(string.Create(inv, $"| {seed} | {r.Best:F4} | {t.Best:F4} | {(t.Best - r.Best) * 100:+0.00;-0.00;0.00} |"));
    }
    Console.WriteLine(string.Create(inv, $"| median | {Median(randomBests):F4} | {Median(tpeBests):F4} | {(Median(tpeBests) - Median(randomBests)) * 100:+0.00;-0.00;0.00} |"));
}
Console.WriteLine();
Console.WriteLine(string.Create(inv, $"{trainer.EpochsTrained} epochs trained in {trainer.Seconds:F0} s"));

static double Median(List<double> xs)
{
    var sorted = xs.Order().ToList();
    return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]) / 2;
}

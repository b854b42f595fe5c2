// Accuracy against sparsity on Fashion-MNIST: the small CNN trained four times in this process
// with the same data, seed and schedule, unpruned and with gradual magnitude pruning to 50, 80
// and 90 % of its conv and linear weights (cubic schedule over all but the last epoch, which
// fine-tunes). Prints one markdown row per configuration.
//
//   dotnet run -c Release --project bench/PruningAccuracy -- [--images 5000] [--test 2000] [--epochs 3]
using System.Diagnostics;
using System.Globalization;
using Orchestrator.Data;
using Orchestrator.Trials;
using Orchestrator.Worker.Native;
using Orchestrator.Worker.Training;
using TorchSharp;

var inv = CultureInfo.InvariantCulture;
string? Arg(string name) => Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : null;
var images = int.Parse(Arg("--images") ?? "5000", inv);
var test = int.Parse(Arg("--test") ?? "2000", inv);
var epochs = int.Parse(Arg("--epochs") ?? "3", inv);
var frequency = int.Parse(Arg("--frequency") ?? "20", inv);
double[] sparsities = [0, 0.5, 0.8, 0.9];

TorchRuntime.Initialize();
TrialSpec Spec(double sparsity) => new()
{
    Data = new DataSpec { Name = "fashion-mnist", LimitTrain = images, LimitTest = test, Download = false },
    Model = new ModelSpec { Name = "simple-cnn" },
    Epochs = epochs,
    BatchSize = 64,
    Seed = 1,
    Optimizer = new OptimizerSpec { Name = "sgd", Lr = 0.05, Momentum = 0.9 },
    Schedule = new ScheduleSpec { Name = "cosine" },
    // 0 % is the plain dense run: no pruning section at all.
    Pruning = sparsity > 0 ? new PruningSpec { Sparsity = sparsity, Frequency = frequency } : null,
};
TrialSpecYaml.Validate(Spec(0.9));
var data = DatasetLoader.Load(Spec(0).Data, 1, null, CancellationToken.None);

Console.WriteLine(string.Create(inv, $"cores {Environment.ProcessorCount}, torch threads {torch.get_num_threads()}, fashion-mnist: {data.Train.Count:N0} training images, {data.Validation.Count:N0} test images, {epochs} epochs, batch 64, mask update every {frequency} steps"));
Console.WriteLine();
Console.WriteLine("| target sparsity | achieved (conv + linear weights) | nonzero weights | test accuracy | vs unpruned | seconds |");
Console.WriteLine("|---|---|---|---|---|---|");
double? dense = null;
foreach (var s in sparsities)
{
    var dir = Directory.CreateTempSubdirectory("orch-bench-prune-").FullName;
    var clock = Stopwatch.StartNew();
    using (var session = new TrainingSession(Spec(s), data, torch.CPU, dir))
    {
        var r = session.Run();
        var prunable = session.Model.named_parameters()
            .Where(p => p.name.EndsWith(".weight", StringComparison.Ordinal) && p.parameter.dim() >= 2).ToList();
        var total = prunable.Sum(p => p.parameter.numel());
        var nonzero = prunable.Sum(p => p.parameter.count_nonzero().ToInt64());
        var achieved = 1 - (double)nonzero / total;
        var accuracy = r.Last.ValAccuracy;
        dense ??= accuracy;
        Console.WriteLine(string.Create(inv,
            $"| {s:P0} | {achieved:P1} | {nonzero:N0} of {total:N0} | {accuracy:F4} | {accuracy - dense.Value:+0.0000;-0.0000;0.0000} | {clock.Elapsed.TotalSeconds:F0} |"));
    }
    Directory.Delete(dir, recursive: true);
}
return 0;

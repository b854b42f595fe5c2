// Samples/s of a SimpleCNN trial on Fashion-MNIST with W=1 and W=2 ranks (separate processes, the
// ring all-reduce over loopback TCP), at the same global batch, and the share of step time spent
// averaging gradients. Each configuration gets the machine's cores split between its ranks.
//
//   dotnet run -c Release --project bench/DataParallel -- [--images 12000] [--global-batch 128]
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Orchestrator.Data;
using Orchestrator.Trials;
using Orchestrator.Worker.Distributed;
using Orchestrator.Worker.Native;
using Orchestrator.Worker.Training;
using TorchSharp;

var inv = CultureInfo.InvariantCulture;
string? Arg(string name) => Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : null;
var images = int.Parse(Arg("--images") ?? "12000", inv);
var globalBatch = int.Parse(Arg("--global-batch") ?? "128", inv);

if (Arg("--rank") is { } rankText)
{
    // A rank: train one epoch and print its figures as one JSON line.
    var rank = int.Parse(rankText, inv);
    var ports = Arg("--ports")!.Split(',').Select(p => int.Parse(p, inv)).ToArray();
    var world = ports.Length;
    TorchRuntime.Initialize();
    torch.set_num_threads(int.Parse(Arg("--threads")!, inv));
    var spec = new TrialSpec
    {
        Data = new DataSpec { Name = "fashion-mnist", LimitTrain = images, LimitTest = 1000 },
        Model = new ModelSpec { Name = "simple-cnn" },
        Epochs = 1,
        BatchSize = globalBatch / world,
        Seed = 1,
    };
    var data = DatasetLoader.Load(spec.Data, spec.Seed, null, CancellationToken.None);
    IAllReduce? ring = null;
    if (world > 1)
    {
        var endpoints = ports.Select(p => RingEndpoint.Tcp("127.0.0.1", p)).ToList();
        ring = await RingAllReduce.ConnectAsync(new RingAllReduceOptions { Rank = rank, Endpoints = endpoints }, CancellationToken.None);
    }
    var dir = Directory.CreateTempSubdirectory("orch-bench-dp-").FullName;
    using (var session = new TrainingSession(spec, data, torch.CPU, dir, null, ring is null ? null : new DistributedContext(rank, world, ring)))
    {
        var m = session.Run().Last;
        if (rank == 0)
            Console.WriteLine(JsonSerializer.Serialize(new { world, m.ImagesPerSecond, m.MeanStepSeconds, m.AggregationSeconds, m.AggregationBytes, m.ValAccuracy },
                new JsonSerializerOptions { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals }));
    }
    if (ring is not null) await ring.DisposeAsync();
    Directory.Delete(dir, recursive: true);
    return 0;
}

Console.WriteLine($"cores {Environment.ProcessorCount}, {images:N0} training images, global batch {globalBatch}, 1 epoch per configuration");
Console.WriteLine();
Console.WriteLine("| ranks | threads per rank | samples/s (all ranks) | mean step ms | all-reduce ms per step | share of step aggregating | val accuracy |");
Console.WriteLine("|---|---|---|---|---|---|---|");
var results = new Dictionary<int, double>();
foreach (var world in new[] { 1, 2 })
{
    var threads = Math.Max(1, Environment.ProcessorCount / world);
    var ports = Enumerable.Range(0, world).Select(_ => FreePort()).ToArray();
    var self = Environment.ProcessPath!;
    var dll = typeof(Program).Assembly.Location;
    var children = Enumerable.Range(0, world).Select(r =>
    {
        var psi = new ProcessStartInfo(self) { RedirectStandardOutput = true };
        foreach (var a in new[] { dll, "--rank", r.ToString(inv), "--ports", string.Join(',', ports), "--threads", threads.ToString(inv),
                     "--images", images.ToString(inv), "--global-batch", globalBatch.ToString(inv) })
            psi.ArgumentList.Add(a);
        return Process.Start(psi)!;
    }).ToList();
    var output = await children[0].StandardOutput.ReadToEndAsync();
    foreach (var c in children) await c.WaitForExitAsync();
    var line = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Last(l => l.StartsWith('{'));
    using var doc = JsonDocument.Parse(line);
    var r0 = doc.RootElement;
    var ips = r0.GetProperty("ImagesPerSecond").GetDouble();
    var step = r0.GetProperty("MeanStepSeconds").GetDouble();
    var agg = r0.GetProperty("AggregationSeconds").ValueKind == JsonValueKind.Number ? r0.GetProperty("AggregationSeconds").GetDouble() : double.NaN;
    results[world] = ips;
    Console.WriteLine(string.Create(inv, $"| {world} | {threads} | {ips:N0} | {step * 1000:F1} | {(double.IsNaN(agg) ? "-" : (agg * 1000).ToString("F1", inv))} | {(double.IsNaN(agg) ? "-" : (agg / step).ToString("P0", inv))} | {r0.GetProperty("ValAccuracy").GetDouble():F4} |"));
}
Console.WriteLine();
Console.WriteLine(string.Create(inv, $"W=2 / W=1 samples/s: {results[2] / results[1]:F2}"));
return 0;

static int FreePort()
{
    using var l = new TcpListener(IPAddress.Loopback, 0);
    l.Start();
    return ((IPEndPoint)l.LocalEndpoint).Port;
}

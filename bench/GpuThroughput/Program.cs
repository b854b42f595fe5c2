// ResNet-18 (CIFAR stem) training images/s on one pre-loaded batch, through the worker's own
// training step (TrainingSession.Optimize) in fp32, bf16 and fp16; then a 2-rank data-parallel
// trial with both ranks on the one device (a ring over Unix sockets), whose weights must end
// bit-identical. bench/gpu/run.sh runs it beside PyTorch; prints markdown rows.
//
//   dotnet run -c Release --project bench/GpuThroughput -- [--device cuda] [--libtorch-dir DIR] [--batch 256] [--steps 100]
//     [--warmup 20] [--dp-images N (default 8 batches)]
using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using Orchestrator.Data;
using Orchestrator.Trials;
using Orchestrator.Worker.Distributed;
using Orchestrator.Worker.Native;
using Orchestrator.Worker.Training;
using TorchSharp;

var inv = CultureInfo.InvariantCulture;
string? Arg(string name) => args.SkipWhile(a => a != name).Skip(1).FirstOrDefault();
TorchRuntime.Initialize(Arg("--libtorch-dir"));
var device = TorchRuntime.ResolveDevice(Arg("--device") ?? "cuda");
var batch = int.Parse(Arg("--batch") ?? "256", inv);
var steps = int.Parse(Arg("--steps") ?? "100", inv);
var warmup = int.Parse(Arg("--warmup") ?? "20", inv);
var dataParallelImages = int.Parse(Arg("--dp-images") ?? (batch * 8).ToString(inv), inv);
var work = Directory.CreateTempSubdirectory("orch-gpu-bench-").FullName;
Console.WriteLine($"device {device}, batch {batch}, {steps} timed steps after {warmup} warm-up steps");
Console.WriteLine();
Console.WriteLine("| what | precision | img/s |");
Console.WriteLine("|---|---|---|");
try
{
    foreach (var precision in new[] { "fp32", "bf16", "fp16" })
        Console.WriteLine(string.Create(inv, $"| ResNet-18 train step, pre-loaded batch (ours) | {precision} | {Throughput(precision):N0} |"));
    var (imagesPerSecond, identical) = DataParallel();
    Console.WriteLine(string.Create(inv, $"| 2-rank data-parallel ResNet-18, both ranks on {device}, ring over Unix sockets | fp32 | {imagesPerSecond:N0} (replicas identical: {(identical ? "yes" : "NO")}) |"));
}
finally
{
    Directory.Delete(work, recursive: true);
}

double Throughput(string precision)
{
    using var session = new TrainingSession(Spec(precision, batch), Data(batch * 2, 0), device, Path.Combine(work, precision));
    using var x = torch.randn(batch, 3, 32, 32, device: device);
    using var y = torch.randint(0, 10, batch, device: device);
    void Step()
    {
        using var scope = torch.NewDisposeScope();
        session.Optimize(x, y);
    }
    for (var i = 0; i < warmup; i++) Step();
    Sync();
    var clock = Stopwatch.StartNew();
    for (var i = 0; i < steps; i++) Step();
    Sync();
    return steps * batch / clock.Elapsed.TotalSeconds;
}

(double ImagesPerSecond, bool Identical) DataParallel()
{
    const int world = 2;
    var secret = RandomNumberGenerator.GetBytes(32);
    var endpoints = Enumerable.Range(0, world).Select(r => RingEndpoint.Unix(Path.Combine(work, $"ring-{r}.sock"))).ToList();
    var data = Data(dataParallelImages, 1);
    var sessions = new TrainingSession[world];
    var clock = Stopwatch.StartNew();
    // One thread per rank: a training session runs on its own thread (dispose scopes are thread-static).
    // A long ring timeout: the ranks build their models and warm the device up at different speeds.
    var threads = Enumerable.Range(0, world).Select(rank => new Thread(() =>
    {
        var ring = RingAllReduce.ConnectAsync(new RingAllReduceOptions { Rank = rank, Endpoints = endpoints, Secret = secret, Timeout = TimeSpan.FromMinutes(2) }, CancellationToken.None).GetAwaiter().GetResult();
        TrainingSession session;
        // One at a time: a session seeds libtorch's global generator and draws its initial weights
        // from it, and both ranks live in this one process (in a trial each is its own process).
        lock (sessions)
            session = new TrainingSession(Spec("fp32", batch / world, epochs: 2), data, device, Path.Combine(work, $"rank{rank}"), null,
                new DistributedContext(rank, world, ring));
        session.Run();
        Sync();
        sessions[rank] = session;
        ring.DisposeAsync().AsTask().GetAwaiter().GetResult();
    })).ToList();
    threads.ForEach(t => t.Start());
    threads.ForEach(t => t.Join());
    var seconds = clock.Elapsed.TotalSeconds;
    var identical = true;
    // The weights, not the buffers: BatchNorm statistics stay local to each rank, as in PyTorch DDP.
    var b = sessions[1].Model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
    foreach (var (name, parameter) in sessions[0].Model.named_parameters())
        identical &= parameter.eq(b[name]).all().item<bool>();
    foreach (var s in sessions) s.Dispose();
    return (2 * data.Train.Count / seconds, identical);
}

TrialSpec Spec(string precision, int batchSize, int epochs = 1000) => new()
{
    Data = new DataSpec { Name = "bench" },
    Model = new ModelSpec { Name = "resnet18", Stem = "cifar" },
    Epochs = epochs,
    BatchSize = batchSize,
    Precision = precision,
    Optimizer = new OptimizerSpec { Name = "sgd", Lr = 0.05, Momentum = 0.9 },
};

// CIFAR-shaped random images in memory: the steps measured here never read them (a pre-loaded
// batch), the data-parallel trial trains on them.
static DatasetSplits Data(int count, int seed)
{
    var shape = new ImageShape(3, 32, 32);
    var pixels = new byte[count * shape.Size];
    new Random(seed).NextBytes(pixels);
    var labels = Enumerable.Range(0, count).Select(i => i % 10).ToArray();
    var classes = Enumerable.Range(0, 10).Select(i => $"c{i}").ToArray();
    var train = new InMemoryImageDataset("bench", shape, pixels, labels, classes);
    var info = new DatasetInfo("bench", shape, classes, [0.5f, 0.5f, 0.5f], [0.25f, 0.25f, 0.25f], []);
    return new DatasetSplits(train, train, info);
}

void Sync()
{
    if (device.type == DeviceType.CUDA) torch.cuda.synchronize();
}

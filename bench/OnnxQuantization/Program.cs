// int8 against float32 in ONNX Runtime on the CPU, side by side: for each workload, train a model briefly
// with orch's trainer, export the checkpoint as float32 ONNX and as int8 QDQ ONNX (the code behind
// `orch export --format onnx [--quantize int8]`), then measure on the same validation images: accuracy,
// file size, and latency (batch 1, and images/s at batch 64), rounds alternating between the two models.
//
//   dotnet run -c Release --project bench/OnnxQuantization -- [--rounds 5] [--threads 2] [--calibration-images 256]
//
// Workloads: simple-cnn on Fashion-MNIST (real data, the 10,000 test images); ResNet-18 with the CIFAR stem
// on CIFAR-shaped images (orch's synthetic data set, 3x32x32, 10 classes: no CIFAR-10 files here; it is easy,
// so the top-1 agreement between the two models says more than its accuracy) and, for a real-data accuracy
// figure, the same ResNet-18 on Fashion-MNIST (1x28x28).
using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.OnnxRuntime;
using Orchestrator.Data;
using Orchestrator.Trials;
using Orchestrator.Worker.Export;
using Orchestrator.Worker.Native;
using TrainingSession = Orchestrator.Worker.Training.TrainingSession;
using TorchSharp;

var inv = CultureInfo.InvariantCulture;
string? Arg(string name) => Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : null;
var rounds = int.Parse(Arg("--rounds") ?? "5", inv);
var threads = int.Parse(Arg("--threads") ?? "2", inv);
var calibrationImages = int.Parse(Arg("--calibration-images") ?? "256", inv);
var only = Arg("--only");

TorchRuntime.Initialize();
torch.set_num_threads(threads);
Console.WriteLine($"cores {Environment.ProcessorCount}, ONNX Runtime {OrtEnv.Instance().GetVersionString()}, {threads} intra-op threads, {rounds} rounds, calibration on {calibrationImages} training images");
Console.WriteLine();

var workloads = new (string Name, TrialSpec Spec)[]
{
    ("simple-cnn, fashion-mnist", new TrialSpec
    {
        Data = new DataSpec { Name = "fashion-mnist", LimitTrain = 20_000, Download = false },
        Model = new ModelSpec { Name = "simple-cnn" },
        Epochs = 2, BatchSize = 64, Seed = 1,
    }),
    ("resnet18 (cifar stem), synthetic 3x32x32", new TrialSpec
    {
        Data = new DataSpec { Name = "synthetic", ImageSize = 32, LimitTrain = 3_000, LimitTest = 1_000 },
        Model = new ModelSpec { Name = "resnet18", Stem = "cifar" },
        Epochs = 1, BatchSize = 64, Seed = 1,
    }),
    ("resnet18 (cifar stem), fashion-mnist", new TrialSpec
    {
        Data = new DataSpec { Name = "fashion-mnist", LimitTrain = 10_000, LimitTest = 2_000, Download = false },
        Model = new ModelSpec { Name = "resnet18", Stem = "cifar" },
        Epochs = 2, BatchSize = 64, Seed = 1,
    }),
};

var rows = new List<string>();
foreach (var (name, spec) in workloads)
{
    if (only is not null && !name.StartsWith(only, StringComparison.Ordinal)) continue;
    var dir = Directory.CreateTempSubdirectory("orch-bench-onnx-").FullName;
    try
    {
        var data = DatasetLoader.Load(spec.Data, spec.Seed, null, CancellationToken.None);
        var watch = Stopwatch.StartNew();
        string checkpoint;
        using (var session = new TrainingSession(spec, data, torch.CPU, dir))
        {
            var result = session.Run();
            checkpoint = session.BestCheckpointPath;
            Console.WriteLine($"{name}: trained {spec.Epochs} epoch(s) on {data.Train.Count:N0} images in {watch.Elapsed.TotalSeconds:F0} s, validation accuracy (TorchSharp) {result.Last.ValAccuracy:F4}");
        }
        var fp32Path = Path.Combine(dir, "model.onnx");
        var int8Path = Path.Combine(dir, "model.int8.onnx");
        CheckpointExporter.Export(new ExportRequest(checkpoint, "onnx", fp32Path));
        watch.Restart();
        CheckpointExporter.Export(new ExportRequest(checkpoint, "onnx", int8Path, "int8", calibrationImages));
        Console.WriteLine($"{name}: int8 export (calibration + quantization) took {watch.Elapsed.TotalSeconds:F1} s");

        var validation = data.Validation;
        var inputs = Images(validation);
        using var fp32 = Open(fp32Path, threads);
        using var int8 = Open(int8Path, threads);
        var (accFp32, topFp32) = Accuracy(fp32, validation, inputs);
        var (accInt8, topInt8) = Accuracy(int8, validation, inputs);
        var agreement = topFp32.Zip(topInt8).Count(t => t.First == t.Second) / (double)validation.Count;

        // Latency: alternate the two models each round; medians over rounds.
        var s = validation.Shape;
        var one = inputs[..s.Size];
        var batch = inputs[..(64 * s.Size)];
        var single = (Fp32: new List<double>(), Int8: new List<double>());
        var throughput = (Fp32: new List<double>(), Int8: new List<double>());
        for (var r = 0; r < rounds + 1; r++)
        {
            foreach (var (session, isInt8) in r % 2 == 0 ? new[] { (fp32, false), (int8, true) } : new[] { (int8, true), (fp32, false) })
            {
                var ms = MedianMs(session, one, 1, s, 50);
                var ips = 64 / (MedianMs(session, batch, 64, s, 5) / 1000);
                if (r == 0) continue; // warm-up
                (isInt8 ? single.Int8 : single.Fp32).Add(ms);
                (isInt8 ? throughput.Int8 : throughput.Fp32).Add(ips);
            }
        }
        var sizeFp32 = new FileInfo(fp32Path).Length;
        var sizeInt8 = new FileInfo(int8Path).Length;
        Console.WriteLine($"{name}: accuracy on {validation.Count:N0} validation images: float32 {accFp32:F4}, int8 {accInt8:F4} (drop {100 * (accFp32 - accInt8):F2} points); same top-1 class on {agreement:P2}");
        Console.WriteLine($"{name}: size float32 {sizeFp32 / 1e6:F2} MB, int8 {sizeInt8 / 1e6:F2} MB ({(double)sizeFp32 / sizeInt8:F2}x)");
        Console.WriteLine($"{name}: batch-1 latency median float32 {Median(single.Fp32):F3} ms, int8 {Median(single.Int8):F3} ms (speed-up {Median(single.Fp32) / Median(single.Int8):F2}x)");
        Console.WriteLine($"{name}: batch-64 throughput median float32 {Median(throughput.Fp32):F0} img/s, int8 {Median(throughput.Int8):F0} img/s ({Median(throughput.Int8) / Median(throughput.Fp32):F2}x)");
        Console.WriteLine();
        rows.Add(string.Create(inv, $"| {name} | {validation.Count:N0} | {accFp32:F4} | {accInt8:F4} | {100 * (accFp32 - accInt8):F2} | {100 * agreement:F2} % | {sizeFp32 / 1e6:F2} | {sizeInt8 / 1e6:F2} | " +
                                    $"{Median(single.Fp32):F3} | {Median(single.Int8):F3} | {Median(single.Fp32) / Median(single.Int8):F2}x | " +
                                    $"{Median(throughput.Fp32):F0} | {Median(throughput.Int8):F0} | {Median(throughput.Int8) / Median(throughput.Fp32):F2}x |"));
    }
    finally
    {
        Directory.Delete(dir, recursive: true);
    }
}
Console.WriteLine("| workload | val images | acc fp32 | acc int8 | drop (points) | same top-1 | MB fp32 | MB int8 | batch-1 ms fp32 | batch-1 ms int8 | speed-up | img/s fp32 (b64) | img/s int8 (b64) | ratio |");
Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
foreach (var row in rows) Console.WriteLine(row);
return 0;

static InferenceSession Open(string path, int threads)
{
    using var options = new SessionOptions { IntraOpNumThreads = threads, InterOpNumThreads = 1, GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
    return new InferenceSession(path, options);
}

// The graph's input: pixels in [0, 1] (it normalises itself).
static float[] Images(IImageDataset data)
{
    var s = data.Shape;
    var pixels = new byte[s.Size];
    var all = new float[(long)data.Count * s.Size];
    for (var i = 0; i < data.Count; i++)
    {
        data.CopyImage(i, pixels);
        for (var j = 0; j < s.Size; j++) all[(long)i * s.Size + j] = pixels[j] / 255f;
    }
    return all;
}

static float[] Run(InferenceSession session, float[] input, int n, ImageShape s)
{
    using var value = OrtValue.CreateTensorValueFromMemory(input, [n, s.Channels, s.Height, s.Width]);
    using var options = new RunOptions();
    using var outputs = session.Run(options, ["input"], [value], ["logits"]);
    return outputs[0].GetTensorDataAsSpan<float>().ToArray();
}

static (double Accuracy, int[] Top1) Accuracy(InferenceSession session, IImageDataset data, float[] inputs)
{
    var s = data.Shape;
    var correct = 0;
    var top1 = new int[data.Count];
    for (var start = 0; start < data.Count; start += 500)
    {
        var n = Math.Min(500, data.Count - start);
        var logits = Run(session, inputs[(start * s.Size)..((start + n) * s.Size)], n, s);
        var k = logits.Length / n;
        for (var i = 0; i < n; i++)
        {
            var best = 0;
            for (var c = 1; c < k; c++) if (logits[i * k + c] > logits[i * k + best]) best = c;
            top1[start + i] = best;
            if (best == data.GetLabel(start + i)) correct++;
        }
    }
    return ((double)correct / data.Count, top1);
}

static double MedianMs(InferenceSession session, float[] input, int n, ImageShape s, int repeats)
{
    var times = new double[repeats];
    for (var i = 0; i < repeats; i++)
    {
        var t = Stopwatch.GetTimestamp();
        Run(session, input, n, s);
        times[i] = Stopwatch.GetElapsedTime(t).TotalMilliseconds;
    }
    return Median(times);
}

static double Median(IEnumerable<double> values)
{
    var sorted = values.Order().ToArray();
    return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
}

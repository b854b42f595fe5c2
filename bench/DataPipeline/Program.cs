// Training throughput with the real data pipeline (loader thread, crop/flip, device transform)
// against the same model stepping on one pre-loaded, already-normalised batch. Both run in this
// process, alternating, so machine noise hits both; the ratio is what matters (target ≥ 0.95).
//
//   dotnet run -c Release --project bench/DataPipeline -- [--batches N] [--rounds R] [--device cpu|cuda] [--libtorch-dir DIR]
//     [--resnet] [--imagefolder --loader-threads N --images M]: the last, ResNet-18 at 224 on generated JPEGs
using System.Diagnostics;
using System.Globalization;
using Orchestrator.Data;
using Orchestrator.Data.Readers;
using Orchestrator.Trials;
using Orchestrator.Worker.Data;
using Orchestrator.Worker.Native;
using Orchestrator.Worker.Training;
using TorchSharp;

var options = Args.Parse(args);
TorchRuntime.Initialize(options.LibTorchDir);
var device = TorchRuntime.ResolveDevice(options.Device);
Console.WriteLine($"device {device}, torch threads {torch.get_num_threads()}, batches per measurement {options.Batches}, rounds {options.Rounds}");
Console.WriteLine();
Console.WriteLine("| workload | model | batch | pipeline img/s | pre-loaded img/s | ratio |");
Console.WriteLine("|---|---|---|---|---|---|");

var workDir = Directory.CreateTempSubdirectory("orch-bench-").FullName;
try
{
    // Fashion-MNIST, real files, no augmentation beyond normalisation.
    var fashion = DatasetLoader.Load(new DataSpec { Name = "fashion-mnist", LimitTest = 256 }, 0, null, CancellationToken.None);
    Measure("fashion-mnist (IDX)", fashion, "simple-cnn", new AugmentSpec(), options.BatchSize);

    // CIFAR-format binary batches written here (CIFAR cannot be downloaded on this machine),
    // with the tutorial's crop(4) + flip + normalise.
    var cifarDir = WriteCifarBatches(workDir, imagesPerBatch: 10_000);
    var cifar = DatasetLoader.Load(new DataSpec { Name = "cifar10", Dir = cifarDir, LimitTest = 256 }, 0, null, CancellationToken.None);
    Measure("cifar10 format, crop+flip+normalize", cifar, "simple-cnn", new AugmentSpec { CropPadding = 4, Flip = true }, options.BatchSize);
    if (options.ResNet)
        Measure("cifar10 format, crop+flip+normalize", cifar, "resnet18", new AugmentSpec { CropPadding = 4, Flip = true }, options.BatchSize);
    if (options.ImageFolder)
    {
        // ImageNet-style: JPEG photos decoded, random-resized crop (224) from each original and flip
        // on the loader threads, ResNet-18 with the ImageNet stem.
        var photos = GeneratedPhotos.Write(Path.Combine(workDir, "photos"), options.Images);
        var folder = DatasetLoader.Load(new DataSpec { Name = "imagefolder", Dir = photos, ImageSize = 256 }, 0, null, CancellationToken.None);
        Measure($"JPEG folder, random-resized crop 224 + flip, {options.LoaderThreads} loader threads", folder, "resnet18",
            new AugmentSpec { RandomResizedCrop = true, CropSize = 224, Flip = true }, options.BatchSize, options.LoaderThreads);
    }
}
finally
{
    Directory.Delete(workDir, recursive: true);
}

void Measure(string name, DatasetSplits data, string model, AugmentSpec augment, int batchSize, int loaderThreads = 1)
{
    var spec = new TrialSpec
    {
        Data = new DataSpec { Name = data.Info.Name },
        Model = new ModelSpec { Name = model, Stem = augment.RandomResizedCrop ? "imagenet" : null },
        Epochs = 1000,
        BatchSize = batchSize,
        Augment = augment,
    };
    using var session = new TrainingSession(spec, data, device, Path.Combine(workDir, "run-" + model), null);
    var cropsOnHost = augment.RandomResizedCrop && data.Train is ICroppingImageDataset;
    using var transform = new DeviceTransform(DeviceTransform.For(data.Info, augment, cropsOnHost), device);
    using var loader = new BatchLoader(data.Train, new BatchPlan(batchSize, true, true, 0, CropPadding: augment.CropPadding, Flip: augment.Flip,
        LoaderThreads: loaderThreads, RandomResizedCropSide: cropsOnHost ? augment.CropSize : null));

    // One batch, prepared once and kept on the device.
    var first = loader.Epoch(1, CancellationToken.None).First();
    var (x0, y0) = transform.Apply(first, train: true);
    var fixedX = x0.DetachFromDisposeScope();
    var fixedY = y0.DetachFromDisposeScope();

    double Preloaded()
    {
        var sw = Stopwatch.StartNew();
        for (var i = 0; i < options.Batches; i++)
        {
            using var scope = torch.NewDisposeScope();
            session.Optimize(fixedX, fixedY);
        }
        Sync();
        return options.Batches * batchSize / sw.Elapsed.TotalSeconds;
    }

    var epoch = 1;
    double Pipeline()
    {
        var sw = Stopwatch.StartNew();
        var n = 0;
        foreach (var batch in loader.Epoch(++epoch, CancellationToken.None))
        {
            using var scope = torch.NewDisposeScope();
            var (x, y) = transform.Apply(batch, train: true);
            var count = batch.Count;
            loader.Return(batch);
            session.Optimize(x, y);
            n += count;
            if (n >= options.Batches * batchSize) break;
        }
        Sync();
        return n / sw.Elapsed.TotalSeconds;
    }

    Preloaded(); // warm-up: first-call costs (allocator, kernels) out of the measurement
    Pipeline();
    var pre = new List<double>();
    var pipe = new List<double>();
    for (var r = 0; r < options.Rounds; r++)
    {
        pipe.Add(Pipeline());
        pre.Add(Preloaded());
    }
    double Median(List<double> v) => v.Order().ElementAt(v.Count / 2);
    var (mp, mq) = (Median(pipe), Median(pre));
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {name} | {model} | {batchSize} | {mp:N0} | {mq:N0} | {mp / mq:F3} |"));
    fixedX.Dispose();
    fixedY.Dispose();
}

void Sync()
{
    if (device.type == DeviceType.CUDA) torch.cuda.synchronize();
}

static string WriteCifarBatches(string root, int imagesPerBatch)
{
    var dir = Directory.CreateDirectory(Path.Combine(root, CifarReader.Cifar10Folder)).FullName;
    var rng = new Random(1);
    var record = new byte[1 + 3072];
    foreach (var name in new[] { "data_batch_1.bin", "data_batch_2.bin", "test_batch.bin" })
    {
        using var f = File.Create(Path.Combine(dir, name));
        for (var i = 0; i < imagesPerBatch; i++)
        {
            rng.NextBytes(record);
            record[0] = (byte)(i % 10);
            f.Write(record);
        }
    }
    // The reader wants all five training batches; the last three repeat the first two's sizes.
    foreach (var name in new[] { "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin" })
        File.Copy(Path.Combine(dir, "data_batch_1.bin"), Path.Combine(dir, name));
    return dir;
}

sealed record Args(int Batches, int Rounds, int BatchSize, string Device, string? LibTorchDir, bool ResNet, bool ImageFolder, int LoaderThreads, int Images)
{
    public static Args Parse(string[] a)
    {
        string? Get(string name) => Array.IndexOf(a, name) is var i and >= 0 && i + 1 < a.Length ? a[i + 1] : null;
        return new Args(
            int.Parse(Get("--batches") ?? "40", CultureInfo.InvariantCulture),
            int.Parse(Get("--rounds") ?? "3", CultureInfo.InvariantCulture),
            int.Parse(Get("--batch-size") ?? "128", CultureInfo.InvariantCulture),
            Get("--device") ?? "auto",
            Get("--libtorch-dir"),
            a.Contains("--resnet"),
            a.Contains("--imagefolder"),
            int.Parse(Get("--loader-threads") ?? "2", CultureInfo.InvariantCulture),
            int.Parse(Get("--images") ?? "400", CultureInfo.InvariantCulture));
    }
}

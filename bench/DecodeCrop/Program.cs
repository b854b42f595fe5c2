// JPEG decode + RandomResizedCrop(224) + horizontal flip, per core: the worker's loader path
// (ImageFolderDataset.CopyRandomResizedCrop, then the flip) against Pillow on the same files, both
// on one thread, rounds alternating so that machine noise hits both. Prints a markdown table.
//
//   dotnet run -c Release --project bench/DecodeCrop -- [--images 600] [--rounds 3] [--dir FOLDER]
using System.Diagnostics;
using System.Globalization;
using Orchestrator.Data;
using Orchestrator.Data.Readers;
using Orchestrator.Worker.Data;
using SkiaSharp;

var inv = CultureInfo.InvariantCulture;
string? Arg(string name) => args.SkipWhile(a => a != name).Skip(1).FirstOrDefault();
var images = int.Parse(Arg("--images") ?? "600", inv);
var rounds = int.Parse(Arg("--rounds") ?? "3", inv);
const int Side = 224;
var generated = Arg("--dir") is null;
var dir = Arg("--dir") ?? GeneratedPhotos.Write(Directory.CreateTempSubdirectory("orch-decode-").FullName, images);
try
{
    var data = new ImageFolderDataset(dir, Side);
    var bytes = Directory.EnumerateFiles(dir, "*.jpg", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
    Console.WriteLine($"{data.Count} JPEGs, {bytes / 1e6:F1} MB, sides 300 to 1600 px; crop {Side}, one thread each");
    Console.WriteLine();
    var ours = new List<double>();
    var pillow = new List<double>();
    var draft = new List<double>();
    var decodeOnly = new List<double>();
    Ours(data); // warm-up: JIT and the decoder's first-use costs out of the measurement
    for (var r = 0; r < rounds; r++)
    {
        ours.Add(Ours(data));
        decodeOnly.Add(DecodeOnly(data));
        pillow.Add(Pillow(dir, draft: false));
        draft.Add(Pillow(dir, draft: true));
    }
    double Median(List<double> v) => v.Order().ElementAt(v.Count / 2);
    Console.WriteLine("| decoder | img/s per core (median) | ours ÷ it |");
    Console.WriteLine("|---|---|---|");
    Console.WriteLine(string.Create(inv, $"| ours (SkiaSharp, decoder downscaling, crop drawn at 224) | {Median(ours):F0} | 1.00 |"));
    Console.WriteLine(string.Create(inv, $"| ours, the decode alone (at the scale the crop allows) | {Median(decodeOnly):F0} | {Median(ours) / Median(decodeOnly):F2} |"));
    Console.WriteLine(string.Create(inv, $"| Pillow, as torchvision does it (full decode, resize of the window) | {Median(pillow):F0} | {Median(ours) / Median(pillow):F2} |"));
    Console.WriteLine(string.Create(inv, $"| Pillow with draft mode (its decoder downscaling too) | {Median(draft):F0} | {Median(ours) / Median(draft):F2} |"));
}
finally
{
    if (generated) Directory.Delete(dir, recursive: true);
}

static double Ours(ImageFolderDataset data)
{
    var rng = new Random(1);
    var shape = new ImageShape(3, Side, Side);
    var crop = new byte[shape.Size];
    var flipped = new byte[shape.Size];
    var clock = Stopwatch.StartNew();
    for (var i = 0; i < data.Count; i++)
    {
        data.CopyRandomResizedCrop(i, crop, Side, rng);
        if (rng.Next(2) == 1) BatchLoader.CropFlip(crop, shape, flipped, shape, 0, 0, flip: true);
    }
    return data.Count / clock.Elapsed.TotalSeconds;
}

// The decode step of Ours alone: same windows, same decoder scaling, no drawing.
static double DecodeOnly(ImageFolderDataset data)
{
    var rng = new Random(1);
    var clock = Stopwatch.StartNew();
    for (var i = 0; i < data.Count; i++)
    {
        using var codec = SKCodec.Create(data.GetPath(i));
        var full = codec.Info;
        var window = RandomResizedCrop.Sample(full.Width, full.Height, rng);
        var dims = ImageFolderDataset.DecodeSize(codec, window, Side);
        var info = new SKImageInfo(dims.Width, dims.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        using var bitmap = new SKBitmap(info);
        codec.GetPixels(info, bitmap.GetPixels());
        rng.Next(2);
    }
    return data.Count / clock.Elapsed.TotalSeconds;
}

static double Pillow(string dir, bool draft)
{
    var script = Path.Combine(AppContext.BaseDirectory, "pillow_crop.py");
    // Debian's Python, where Debian's Pillow (python3-pil) is installed, before any other on the PATH.
    var python = File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
    var start = new ProcessStartInfo(python) { RedirectStandardOutput = true, RedirectStandardError = true };
    foreach (var a in new[] { script, dir, "1" }.Concat(draft ? ["--draft"] : [])) start.ArgumentList.Add(a);
    // One thread, as ours: no OpenMP or BLAS pools in the child.
    start.Environment["OMP_NUM_THREADS"] = "1";
    using var process = Process.Start(start)!;
    var output = process.StandardOutput.ReadToEnd();
    var error = process.StandardError.ReadToEnd();
    process.WaitForExit();
    if (process.ExitCode != 0) throw new InvalidOperationException($"pillow_crop.py failed ({process.ExitCode}): {error}");
    return double.Parse(output.Trim().Split('\n')[^1], CultureInfo.InvariantCulture);
}

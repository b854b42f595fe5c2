using System.Globalization;
using Orchestrator.Data;
using Orchestrator.Sdk;

namespace MyModels;

/// <summary>
/// Exports the data set "csv-images": images written as CSV rows, one image a line,
/// <c>label,p0,p1,…</c> with the pixels as 0–255 integers, channels first (the layout of the
/// well-known MNIST-as-CSV files). <c>data.dir</c> holds <c>train.csv</c> and optionally <c>test.csv</c>
/// (without one the worker holds out a tenth of train) and <c>classes.txt</c> (one class name a line;
/// without it the classes are 0…N−1). Arguments: <c>channels</c> (default 1), <c>height</c> and <c>width</c>
/// (default: square images of the pixels per row). A header line starting with "label" is skipped.
/// </summary>
[PluginExport("csv-images")]
public sealed class CsvImagesProvider : IDatasetProvider
{
    public async Task<DatasetSource> OpenAsync(DatasetRequest request, CancellationToken cancellationToken)
    {
        var dir = request.Dir ?? throw new ArgumentException("csv-images needs data.dir: the folder with train.csv");
        var classesFile = Path.Combine(dir, "classes.txt");
        string[]? classes = File.Exists(classesFile)
            ? [.. (await File.ReadAllLinesAsync(classesFile, cancellationToken).ConfigureAwait(false)).Where(l => l.Length > 0)]
            : null;
        var train = await CsvImageSet.ReadAsync(Path.Combine(dir, "train.csv"), request.Args, classes, cancellationToken).ConfigureAwait(false);
        var testFile = Path.Combine(dir, "test.csv");
        var test = File.Exists(testFile)
            ? await CsvImageSet.ReadAsync(testFile, request.Args, train.Classes, cancellationToken).ConfigureAwait(false)
            : null;
        return new DatasetSource(train, test);
    }
}

/// <summary>One CSV file held in memory.</summary>
internal sealed class CsvImageSet(string name, ImageShape shape, byte[] pixels, int[] labels, IReadOnlyList<string> classes) : IImageDataset
{
    public string Name { get; } = name;
    public int Count => labels.Length;
    public ImageShape Shape { get; } = shape;
    public IReadOnlyList<string> Classes { get; } = classes;
    public int GetLabel(int index) => labels[index];
    public void CopyImage(int index, Span<byte> destination) => pixels.AsSpan(index * Shape.Size, Shape.Size).CopyTo(destination);

    public static async Task<CsvImageSet> ReadAsync(string path, PluginArgs args, IReadOnlyList<string>? classes, CancellationToken ct)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: not found", path);
        var pixels = new List<byte>();
        var labels = new List<int>();
        ImageShape? shape = null;
        var line = 0;
        foreach (var text in await File.ReadAllLinesAsync(path, ct).ConfigureAwait(false))
        {
            line++;
            if (text.Length == 0 || (line == 1 && text.StartsWith("label", StringComparison.OrdinalIgnoreCase))) continue;
            var cells = text.Split(',');
            shape ??= ShapeOf(cells.Length - 1, args, path);
            if (cells.Length - 1 != shape.Value.Size)
                throw new InvalidDataException($"{path}:{line}: {cells.Length - 1} pixels, expected {shape.Value.Size} ({shape})");
            if (!int.TryParse(cells[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out var label) || label < 0)
                throw new InvalidDataException($"{path}:{line}: label '{cells[0]}' is not a class index");
            labels.Add(label);
            for (var i = 1; i < cells.Length; i++)
            {
                if (!byte.TryParse(cells[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out var p))
                    throw new InvalidDataException($"{path}:{line}: pixel {i} '{cells[i]}' is not between 0 and 255");
                pixels.Add(p);
            }
        }
        if (shape is null) throw new InvalidDataException($"{path}: no images");
        var names = classes ?? [.. Enumerable.Range(0, labels.Max() + 1).Select(i => i.ToString(CultureInfo.InvariantCulture))];
        if (labels.Max() >= names.Count) throw new InvalidDataException($"{path}: label {labels.Max()} but only {names.Count} classes");
        return new CsvImageSet(Path.GetFileName(path), shape.Value, [.. pixels], [.. labels], names);
    }

    private static ImageShape ShapeOf(int size, PluginArgs args, string path)
    {
        var channels = args.GetInt("channels", 1);
        var side = (int)Math.Round(Math.Sqrt(size / (double)Math.Max(1, channels)));
        var shape = new ImageShape(channels, args.GetInt("height", side), args.GetInt("width", side));
        return shape.Size == size ? shape : throw new InvalidDataException($"{path}: {size} pixels a row do not make {shape} images (set data.args channels, height, width)");
    }
}

namespace Orchestrator.Data;

// ImageShape and IImageDataset, the data-set contract, live in the SDK (src/Sdk/Data) so that plug-ins implement them.

/// <summary>A data set held in memory: one contiguous CHW uint8 buffer and a label array.</summary>
public sealed class InMemoryImageDataset : IImageDataset
{
    private readonly byte[] _pixels;
    private readonly int[] _labels;

    public InMemoryImageDataset(string name, ImageShape shape, byte[] pixels, int[] labels, IReadOnlyList<string> classes)
    {
        ArgumentNullException.ThrowIfNull(pixels);
        ArgumentNullException.ThrowIfNull(labels);
        if ((long)labels.Length * shape.Size != pixels.Length)
            throw new ArgumentException($"{name}: {pixels.Length} pixel bytes do not hold {labels.Length} images of {shape}", nameof(pixels));
        Name = name;
        Shape = shape;
        _pixels = pixels;
        _labels = labels;
        Classes = classes;
    }

    public string Name { get; }
    public int Count => _labels.Length;
    public ImageShape Shape { get; }
    public IReadOnlyList<string> Classes { get; }

    /// <summary>The whole pixel buffer, CHW per image, images back to back.</summary>
    public ReadOnlySpan<byte> Pixels => _pixels;

    public ReadOnlySpan<int> Labels => _labels;

    public int GetLabel(int index) => _labels[index];

    public void CopyImage(int index, Span<byte> destination)
    {
        var size = Shape.Size;
        _pixels.AsSpan(index * size, size).CopyTo(destination);
    }
}

/// <summary>A view of some items of another data set, in the order of <c>indices</c>.</summary>
public class SubsetDataset(IImageDataset source, int[] indices, string? name = null) : IImageDataset
{
    /// <summary>A subset that keeps its source's abilities: it crops from originals when the source does.</summary>
    public static SubsetDataset Of(IImageDataset source, int[] indices, string? name = null) =>
        source is ICroppingImageDataset cropping ? new CroppingSubsetDataset(cropping, indices, name) : new SubsetDataset(source, indices, name);

    /// <summary>The source index of item <paramref name="index"/>.</summary>
    protected int SourceIndex(int index) => indices[index];

    public string Name { get; } = name ?? source.Name;
    public int Count => indices.Length;
    public ImageShape Shape => source.Shape;
    public IReadOnlyList<string> Classes => source.Classes;
    public IImageDataset Source => source;
    public int GetLabel(int index) => source.GetLabel(indices[index]);
    public void CopyImage(int index, Span<byte> destination) => source.CopyImage(indices[index], destination);
}

/// <summary>A <see cref="SubsetDataset"/> of a data set that crops from its originals (a held-out split of an image folder).</summary>
public sealed class CroppingSubsetDataset(ICroppingImageDataset source, int[] indices, string? name = null)
    : SubsetDataset(source, indices, name), ICroppingImageDataset
{
    public void CopyRandomResizedCrop(int index, Span<byte> destination, int side, Random rng) =>
        source.CopyRandomResizedCrop(SourceIndex(index), destination, side, rng);
}

/// <summary>A data file is corrupt, truncated or not in the expected format.</summary>
public sealed class DataFormatException : Exception
{
    public DataFormatException(string file, string problem, long? offset = null)
        : this(file, problem, offset, null)
    {
    }

    /// <summary>As the (file, problem, offset) form, keeping the low-level error (a decoder's, a zlib's) as the inner exception.</summary>
    public DataFormatException(string file, string problem, long? offset, Exception? inner)
        : base(offset is { } o ? $"{file}: {problem} (at byte offset {o})" : $"{file}: {problem}", inner)
    {
        File = file;
        Problem = problem;
        Offset = offset;
    }

    public DataFormatException() { File = ""; Problem = ""; }
    public DataFormatException(string message) : base(message) { File = ""; Problem = message; }
    public DataFormatException(string message, Exception inner) : base(message, inner) { File = ""; Problem = message; }

    public string File { get; }
    public string Problem { get; }
    public long? Offset { get; }
}

/// <summary>A data set could not be found anywhere it was looked for, or could not be downloaded.</summary>
public sealed class DatasetNotFoundException : Exception
{
    public DatasetNotFoundException() { }
    public DatasetNotFoundException(string message) : base(message) { }
    public DatasetNotFoundException(string message, Exception inner) : base(message, inner) { }
}

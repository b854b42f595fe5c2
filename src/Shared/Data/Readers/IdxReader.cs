using System.Buffers.Binary;
using System.IO.Compression;

namespace Orchestrator.Data.Readers;

/// <summary>
/// Reads MNIST-style IDX files (MNIST, Fashion-MNIST): an image file (magic 0x00000803, dims
/// count × rows × cols) and a label file (magic 0x00000801, dim count), all big-endian, each raw or
/// gzip-compressed. Compression is detected from the content (the 1f 8b gzip magic), never from
/// the file name, because mirrors and hand-made copies are not consistent about ".gz".
/// </summary>
public static class IdxReader
{
    /// <summary>Magic number of an IDX file of unsigned bytes with three dimensions (images).</summary>
    public const int ImagesMagic = 0x00000803;

    /// <summary>Magic number of an IDX file of unsigned bytes with one dimension (labels).</summary>
    public const int LabelsMagic = 0x00000801;

    private const int ImagesHeaderSize = 16;
    private const int LabelsHeaderSize = 8;

    /// <summary>
    /// Reads an image file and its label file into memory. Labels must lie in
    /// [0, <paramref name="classes"/>.Count). When <paramref name="expectedShape"/> is given the
    /// header's rows × cols must match it; otherwise the header decides the shape (1 × rows × cols).
    /// </summary>
    /// <exception cref="DataFormatException">A file is not IDX, is truncated, or the two files disagree.</exception>
    public static InMemoryImageDataset Read(
        string imagesPath, string labelsPath, IReadOnlyList<string> classes, ImageShape? expectedShape = null, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(classes);
        var (pixels, shape) = ReadImages(imagesPath, expectedShape);
        var labels = ReadLabels(labelsPath, classes.Count);
        var imageCount = pixels.Length / shape.Size;
        if (labels.Length != imageCount)
        {
            throw new DataFormatException(labelsPath,
                $"holds {labels.Length} labels but the image file {imagesPath} holds {imageCount} images");
        }
        return new InMemoryImageDataset(name ?? Path.GetFileName(imagesPath), shape, pixels, labels, classes);
    }

    /// <summary>Reads an IDX image file: the pixels of all images back to back, and their shape (1 × rows × cols).</summary>
    public static (byte[] Pixels, ImageShape Shape) ReadImages(string path, ImageShape? expectedShape = null)
    {
        using var stream = Open(path, out var compressed);
        Span<byte> header = stackalloc byte[ImagesHeaderSize];
        ReadHeader(stream, path, header, compressed, ImagesMagic, "image");

        var count = BinaryPrimitives.ReadInt32BigEndian(header[4..]);
        var rows = BinaryPrimitives.ReadInt32BigEndian(header[8..]);
        var cols = BinaryPrimitives.ReadInt32BigEndian(header[12..]);
        if (count < 0 || rows <= 0 || cols <= 0)
            throw new DataFormatException(path, $"impossible dimensions {count} images of {rows}x{cols} in the header", 4);
        if (expectedShape is { } e && (e.Channels != 1 || e.Height != rows || e.Width != cols))
            throw new DataFormatException(path, $"images are {rows}x{cols} by the header, expected {e.Height}x{e.Width}", 8);
        // Int128: three header fields of up to 2^31 each overflow a long (found by fuzzing).
        var total = (Int128)count * rows * cols;
        if (total > Array.MaxLength)
            throw new DataFormatException(path, $"header promises {count} images of {rows}x{cols} ({total} bytes), more than one array can hold", 4);

        var pixels = ReadBody(stream, path, (int)total, ImagesHeaderSize, compressed, $"{count} images of {rows}x{cols}");
        return (pixels, new ImageShape(1, rows, cols));
    }

    /// <summary>Reads an IDX label file; every label must be below <paramref name="classCount"/>.</summary>
    public static int[] ReadLabels(string path, int classCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(classCount);
        using var stream = Open(path, out var compressed);
        Span<byte> header = stackalloc byte[LabelsHeaderSize];
        ReadHeader(stream, path, header, compressed, LabelsMagic, "label");

        var count = BinaryPrimitives.ReadInt32BigEndian(header[4..]);
        if (count < 0)
            throw new DataFormatException(path, $"impossible label count {count} in the header", 4);

        var raw = ReadBody(stream, path, count, LabelsHeaderSize, compressed, $"{count} labels");

        var labels = new int[count];
        for (var i = 0; i < raw.Length; i++)
        {
            int label = raw[i];
            if (label >= classCount)
                ThrowLabelOutOfRange(path, label, classCount, LabelsHeaderSize + i, compressed);
            labels[i] = label;
        }
        return labels;
    }

    /// <summary>Opens <paramref name="path"/>, wrapping it in a gzip decoder when it starts with the gzip magic.</summary>
    private static Stream Open(string path, out bool compressed)
    {
        // A large buffer: the readers below ask for whole bodies at once, and gzip pulls in 1 MiB steps.
        var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1 << 20);
        try
        {
            Span<byte> magic = stackalloc byte[2];
            var n = file.ReadAtLeast(magic, 2, throwOnEndOfStream: false);
            file.Position = 0;
            compressed = n == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
            return compressed ? new GZipStream(file, CompressionMode.Decompress, leaveOpen: false) : file;
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>Reads the magic number, checks it, then reads the rest of the header.</summary>
    /// <remarks>The magic is checked first so that a swapped or foreign file is reported as such, not as a short header.</remarks>
    private static void ReadHeader(Stream stream, string path, Span<byte> header, bool compressed, int expectedMagic, string kind)
    {
        var n = ReadFully(stream, path, header[..4], 0, compressed);
        if (n == 4) CheckMagic(path, header, expectedMagic, kind);
        if (n == 4) n += ReadFully(stream, path, header[4..], 4, compressed);
        if (n < header.Length)
            throw new DataFormatException(path, $"truncated: {n} bytes where a {header.Length}-byte IDX {kind} header was expected{Decompressed(compressed)}", n);
    }

    private static void CheckMagic(string path, ReadOnlySpan<byte> header, int expected, string kind)
    {
        var magic = BinaryPrimitives.ReadInt32BigEndian(header);
        if (magic == expected) return;
        var hint = magic switch
        {
            ImagesMagic => " (this is an IDX image file)",
            LabelsMagic => " (this is an IDX label file)",
            _ => "",
        };
        throw new DataFormatException(path,
            $"wrong magic number 0x{magic:X8} for an IDX {kind} file, expected 0x{expected:X8}{hint}", 0);
    }

    /// <summary>Chunk in which a compressed body is read when its header promises more: memory follows the data, not the header.</summary>
    private const int BodyChunk = 64 << 20;

    /// <summary>
    /// Reads the <paramref name="size"/>-byte body the header promises and checks that nothing
    /// follows it. Memory is taken as the data arrives, never on the header's word alone: a raw
    /// file's length is checked first, a compressed one is read in growing chunks, so a header
    /// that claims billions of items in a small file is an error, not an exhausted memory.
    /// </summary>
    private static byte[] ReadBody(Stream stream, string path, int size, int headerSize, bool compressed, string promised)
    {
        if (stream is FileStream { CanSeek: true } file && file.Length - headerSize < size)
            throw Truncated(path, promised, size, (int)Math.Max(0, file.Length - headerSize), headerSize, compressed);
        var body = GC.AllocateUninitializedArray<byte>(Math.Min(size, BodyChunk));
        var n = 0;
        while (true)
        {
            n += ReadFully(stream, path, body.AsSpan(n), headerSize + n, compressed);
            if (n < body.Length || body.Length == size) break;
            Array.Resize(ref body, (int)Math.Min(size, 2L * body.Length));
        }
        if (n < size) throw Truncated(path, promised, size, n, headerSize, compressed);
        Span<byte> extra = stackalloc byte[1];
        if (ReadFully(stream, path, extra, headerSize + n, compressed) != 0)
        {
            throw new DataFormatException(path,
                $"unexpected data after the {promised} the header promises{Decompressed(compressed)}", headerSize + n);
        }
        return body;
    }

    private static DataFormatException Truncated(string path, string promised, int size, int n, int headerSize, bool compressed) =>
        new(path, $"truncated: the header promises {promised} ({size} bytes) but only {n} bytes follow it{Decompressed(compressed)}", headerSize + n);

    /// <summary>Reads until <paramref name="buffer"/> is full or the stream ends; a corrupt gzip stream becomes a <see cref="DataFormatException"/>.</summary>
    private static int ReadFully(Stream stream, string path, Span<byte> buffer, long offset, bool compressed)
    {
        try
        {
            return stream.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false);
        }
        catch (InvalidDataException ex)
        {
            throw new DataFormatException(path, $"corrupt gzip data: {ex.Message}{Decompressed(compressed)}", offset, ex);
        }
    }

    private static string Decompressed(bool compressed) => compressed ? " (offsets count decompressed bytes)" : "";

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private static void ThrowLabelOutOfRange(string path, int label, int classCount, long offset, bool compressed) =>
        throw new DataFormatException(path,
            $"label {label} is out of range for {classCount} classes (valid: 0..{classCount - 1}){Decompressed(compressed)}", offset);
}

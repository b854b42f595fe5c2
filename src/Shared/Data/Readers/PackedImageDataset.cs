// One file over 300 lines on purpose: the shard format, its writer and its reader are one
// concept that must change together, and the format's documentation takes a fifth of it.
using System.Buffers.Binary;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace Orchestrator.Data.Readers;

/// <summary>
/// Images packed into shard files: what the coordinator serves for an imagefolder data set, so
/// that workers receive a few large files of decoded, resized pixels instead of thousands of
/// JPEGs they would each decode again. One shard, all integers little-endian:
/// <code>
/// 0   8 bytes  magic "ORCHPAK1"
/// 8   int32    channels, int32 height, int32 width
/// 20  int32    image count N
/// 24  int32    class count K, then K × (int32 byte length, UTF-8 class name)
/// H   N × int32       labels (0 ≤ label &lt; K)
/// H+4N N × C·H·W bytes images, uint8 CHW, back to back
/// </code>
/// Labels come in one block before the pixels (rather than interleaved with each image) so that
/// opening a shard reads every label in one read and never touches the pixels. A split is the
/// shards <c>&lt;split&gt;-00000.pack</c>, <c>&lt;split&gt;-00001.pack</c>, … of one folder, each at most
/// <see cref="PackedImageWriter.DefaultMaxShardBytes"/>; <c>train</c> and optionally <c>val</c>.
/// Pixels are read on demand with positional reads, so any number of threads may call
/// <see cref="CopyImage"/> at once and data sets larger than memory work.
/// </summary>
public sealed class PackedImageDataset : IImageDataset, IDisposable
{
    /// <summary>The first 8 bytes of every shard.</summary>
    public static ReadOnlySpan<byte> Magic => "ORCHPAK1"u8;

    /// <summary>File extension of shards.</summary>
    public const string Extension = ".pack";

    /// <summary>Split names the coordinator writes: training shards, validation shards.</summary>
    public const string TrainSplit = "train", ValidationSplit = "val";

    // Bounds that no real data set reaches; a header beyond them is corrupt, not large.
    private const int MaxClasses = 1 << 20, MaxClassNameBytes = 4096, MaxSide = 1 << 15;

    private readonly Shard[] _shards;
    private readonly int[] _starts;
    private readonly int[] _labels;

    private PackedImageDataset(string name, ImageShape shape, IReadOnlyList<string> classes, Shard[] shards, int[] labels)
    {
        Name = name;
        Shape = shape;
        Classes = classes;
        _shards = shards;
        _labels = labels;
        _starts = new int[shards.Length];
        for (int i = 0, start = 0; i < shards.Length; i++)
        {
            _starts[i] = start;
            start += shards[i].Count;
        }
    }

    public string Name { get; }
    public int Count => _labels.Length;
    public ImageShape Shape { get; }
    public IReadOnlyList<string> Classes { get; }

    /// <summary>The shard files, in order.</summary>
    public IReadOnlyList<string> Files => _shards.Select(s => s.Path).ToArray();

    public int GetLabel(int index) => _labels[index];

    /// <exception cref="DataFormatException">The shard cannot be read where the image should be (it shrank after opening).</exception>
    public void CopyImage(int index, Span<byte> destination)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, Count);
        var size = Shape.Size;
        if (destination.Length < size)
            throw new ArgumentException($"destination holds {destination.Length} bytes, an image needs {size}", nameof(destination));
        var s = Array.BinarySearch(_starts, index);
        if (s < 0) s = ~s - 1;
        var shard = _shards[s];
        var offset = shard.PixelOffset + (long)(index - _starts[s]) * size;
        var target = destination[..size];
        var read = 0;
        while (read < size)
        {
            var n = RandomAccess.Read(shard.Handle, target[read..], offset + read);
            if (n == 0) throw new DataFormatException(shard.Path, $"truncated: image {index - _starts[s]} ends beyond the end of the file", offset + read);
            read += n;
        }
    }

    /// <summary>Whether <paramref name="dir"/> holds packed training shards.</summary>
    public static bool IsPacked(string dir) => ShardsOf(dir, TrainSplit).Length > 0;

    /// <summary>The shards of <paramref name="split"/> in <paramref name="dir"/>, in order.</summary>
    public static string[] ShardsOf(string dir, string split) =>
        Directory.Exists(dir)
            ? Directory.GetFiles(dir, split + "-*" + Extension).Order(StringComparer.Ordinal).ToArray()
            : [];

    /// <summary>Opens the <c>train</c> shards of <paramref name="dir"/> and, when present, the <c>val</c> shards (which must have the same classes and shape).</summary>
    /// <exception cref="DatasetNotFoundException">The folder has no training shards.</exception>
    /// <exception cref="DataFormatException">A shard is corrupt or truncated, or the shards disagree.</exception>
    public static (PackedImageDataset Train, PackedImageDataset? Validation) OpenSplits(string dir, string? name = null)
    {
        name ??= "imagefolder";
        var train = ShardsOf(dir, TrainSplit);
        if (train.Length == 0)
            throw new DatasetNotFoundException($"{dir} holds no packed shards ({TrainSplit}-*{Extension})");
        var trainSet = Open(train, name + "/" + TrainSplit);
        var val = ShardsOf(dir, ValidationSplit);
        if (val.Length == 0) return (trainSet, null);
        try
        {
            var valSet = Open(val, name + "/" + ValidationSplit);
            if (valSet.Shape != trainSet.Shape || !valSet.Classes.SequenceEqual(trainSet.Classes, StringComparer.Ordinal))
                throw new DataFormatException(val[0], $"validation shards hold {valSet.Shape} images of {valSet.Classes.Count} classes, training shards {trainSet.Shape} of {trainSet.Classes.Count}");
            return (trainSet, valSet);
        }
        catch
        {
            trainSet.Dispose();
            throw;
        }
    }

    /// <summary>Opens shards that together form one split: reads and checks every header and every label.</summary>
    /// <exception cref="DataFormatException">A shard is corrupt or truncated, or the shards disagree on shape or classes.</exception>
    public static PackedImageDataset Open(IReadOnlyList<string> shards, string name)
    {
        ArgumentNullException.ThrowIfNull(shards);
        ArgumentOutOfRangeException.ThrowIfZero(shards.Count);
        var opened = new List<Shard>(shards.Count);
        try
        {
            ImageShape? shape = null;
            string[]? classes = null;
            var labels = new List<int>();
            foreach (var path in shards)
            {
                var (shard, shardShape, shardClasses, shardLabels) = ReadShard(path);
                opened.Add(shard);
                if (shape is null)
                {
                    shape = shardShape;
                    classes = shardClasses;
                }
                else if (shardShape != shape || !shardClasses.SequenceEqual(classes!, StringComparer.Ordinal))
                {
                    throw new DataFormatException(path, $"holds {shardShape} images of {shardClasses.Length} classes, but {shards[0]} holds {shape} of {classes!.Length}");
                }
                labels.AddRange(shardLabels);
            }
            return new PackedImageDataset(name, shape!.Value, classes!, [.. opened], [.. labels]);
        }
        catch
        {
            foreach (var s in opened) s.Handle.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        foreach (var s in _shards) s.Handle.Dispose();
    }

    private static (Shard, ImageShape, string[], int[]) ReadShard(string path)
    {
        SafeFileHandle handle;
        try
        {
            handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        }
        catch (FileNotFoundException ex)
        {
            throw new DataFormatException(path, "shard file is missing", null, ex);
        }
        try
        {
            var length = RandomAccess.GetLength(handle);
            var reader = new HeaderReader(handle, path, length);
            if (!reader.Bytes(8).SequenceEqual(Magic))
                throw new DataFormatException(path, "not a packed image shard (wrong magic number, expected \"ORCHPAK1\")", 0);
            var c = reader.Int32("channel count", 1, 4);
            var h = reader.Int32("height", 1, MaxSide);
            var w = reader.Int32("width", 1, MaxSide);
            var shape = new ImageShape(c, h, w);
            var count = reader.Int32("image count", 0, int.MaxValue);
            var classCount = reader.Int32("class count", 1, MaxClasses);
            var classes = new string[classCount];
            for (var i = 0; i < classCount; i++)
            {
                var bytes = reader.Int32("class name length", 0, MaxClassNameBytes);
                classes[i] = Encoding.UTF8.GetString(reader.Bytes(bytes));
            }

            var labelOffset = reader.Position;
            var pixelOffset = labelOffset + 4L * count;
            var expected = pixelOffset + (long)count * shape.Size;
            if (length < expected)
            {
                var whole = length <= pixelOffset ? 0 : (length - pixelOffset) / shape.Size;
                throw new DataFormatException(path,
                    $"truncated: the header promises {count} images of {shape} ({expected} bytes in all) but the file has {length} bytes; image {whole} is incomplete",
                    length);
            }
            if (length > expected)
                throw new DataFormatException(path, $"unexpected data after the {count} images the header promises ({length - expected} extra bytes)", expected);

            var raw = reader.Bytes(checked(4 * count));
            var labels = new int[count];
            for (var i = 0; i < count; i++)
            {
                var label = BinaryPrimitives.ReadInt32LittleEndian(raw.AsSpan(4 * i));
                if ((uint)label >= (uint)classCount)
                    throw new DataFormatException(path, $"label {label} of image {i} is out of range for {classCount} classes", labelOffset + 4L * i);
                labels[i] = label;
            }
            return (new Shard(path, handle, pixelOffset, count), shape, classes, labels);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    private sealed record Shard(string Path, SafeFileHandle Handle, long PixelOffset, int Count);

    /// <summary>Sequential reads of a shard header; running out of file is reported with the offset where it ended.</summary>
    private sealed class HeaderReader(SafeFileHandle handle, string path, long length)
    {
        public long Position { get; private set; }

        public byte[] Bytes(int count)
        {
            if (Position + count > length)
                throw new DataFormatException(path, $"truncated: the file ends inside the shard header ({length} bytes)", length);
            var buffer = new byte[count];
            var read = 0;
            while (read < count)
            {
                var n = RandomAccess.Read(handle, buffer.AsSpan(read), Position + read);
                if (n == 0) throw new DataFormatException(path, "truncated: the file ends inside the shard header", Position + read);
                read += n;
            }
            Position += count;
            return buffer;
        }

        public int Int32(string what, int min, int max)
        {
            var at = Position;
            var value = BinaryPrimitives.ReadInt32LittleEndian(Bytes(4));
            if (value < min || value > max)
                throw new DataFormatException(path, $"impossible {what} {value} in the shard header (expected {min}..{max})", at);
            return value;
        }
    }
}

/// <summary>Writes data sets in the <see cref="PackedImageDataset"/> shard format.</summary>
public static class PackedImageWriter
{
    /// <summary>Largest shard written by default (64 MiB): big enough to stream efficiently, small enough to resume cheaply.</summary>
    public const long DefaultMaxShardBytes = 64L << 20;

    /// <summary>
    /// Writes every image of <paramref name="source"/> to shards <c>&lt;split&gt;-NNNNN.pack</c> in
    /// <paramref name="dir"/>, each at most <paramref name="maxShardBytes"/> (but at least one image).
    /// Images of a shard are produced in parallel (readers are safe for concurrent reads; decoding
    /// JPEGs is what takes the time). Returns the files written, in order.
    /// </summary>
    public static IReadOnlyList<string> Write(IImageDataset source, string dir, string split, long maxShardBytes, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxShardBytes, 1);
        Directory.CreateDirectory(dir);
        var header = Header(source.Shape, source.Classes, 0).Length;
        var record = 4L + source.Shape.Size;
        var perShard = (int)Math.Clamp((maxShardBytes - header) / record, 1, int.MaxValue);
        var files = new List<string>();
        // At least one shard, even for an empty split, so that the split exists on the other side.
        for (int start = 0, n = 0; start < source.Count || n == 0; start += perShard, n++)
        {
            ct.ThrowIfCancellationRequested();
            var count = Math.Min(perShard, source.Count - start);
            var path = Path.Combine(dir, $"{split}-{n:D5}{PackedImageDataset.Extension}");
            WriteShard(source, start, count, path, ct);
            files.Add(path);
        }
        return files;
    }

    private static void WriteShard(IImageDataset source, int start, int count, string path, CancellationToken ct)
    {
        var size = source.Shape.Size;
        var labels = new byte[4 * count];
        var pixels = GC.AllocateUninitializedArray<byte>(checked(count * size));
        Parallel.For(0, count, new ParallelOptions { CancellationToken = ct }, i =>
        {
            BinaryPrimitives.WriteInt32LittleEndian(labels.AsSpan(4 * i), source.GetLabel(start + i));
            source.CopyImage(start + i, pixels.AsSpan(i * size, size));
        });
        using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        file.Write(Header(source.Shape, source.Classes, count));
        file.Write(labels);
        file.Write(pixels);
        file.Flush(flushToDisk: true);
    }

    private static byte[] Header(ImageShape shape, IReadOnlyList<string> classes, int count)
    {
        using var ms = new MemoryStream();
        Span<byte> int32 = stackalloc byte[4];
        ms.Write(PackedImageDataset.Magic);
        foreach (var v in new[] { shape.Channels, shape.Height, shape.Width, count, classes.Count })
        {
            BinaryPrimitives.WriteInt32LittleEndian(int32, v);
            ms.Write(int32);
        }
        foreach (var c in classes)
        {
            var bytes = Encoding.UTF8.GetBytes(c);
            BinaryPrimitives.WriteInt32LittleEndian(int32, bytes.Length);
            ms.Write(int32);
            ms.Write(bytes);
        }
        return ms.ToArray();
    }
}

using System.Buffers;

namespace Orchestrator.Data.Readers;

/// <summary>
/// Reads the official CIFAR binary batches. CIFAR-10 (<c>cifar-10-batches-bin</c>): data_batch_1..5.bin
/// and test_batch.bin, records of one label byte and 3072 pixel bytes. CIFAR-100
/// (<c>cifar-100-binary</c>): train.bin and test.bin, records of a coarse label byte, a fine label
/// byte and 3072 pixel bytes; the fine label (100 classes) is used. Pixels are stored as the R, G
/// and B planes of a 32×32 image, which is already the CHW layout the data sets hand out.
/// </summary>
public static class CifarReader
{
    /// <summary>The folder inside the CIFAR-10 archive that holds the batches.</summary>
    public const string Cifar10Folder = "cifar-10-batches-bin";

    /// <summary>The folder inside the CIFAR-100 archive that holds the batches.</summary>
    public const string Cifar100Folder = "cifar-100-binary";

    /// <summary>The shape of every CIFAR image.</summary>
    public static readonly ImageShape Shape = new(3, 32, 32);

    private static readonly string[] Cifar10TrainFiles =
        ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"];

    /// <summary>
    /// Reads the CIFAR-10 train (all five batches) or test split. <paramref name="folder"/> is the
    /// <c>cifar-10-batches-bin</c> folder or the folder that contains it. Class names come from
    /// batches.meta.txt when present, else the standard names.
    /// </summary>
    public static InMemoryImageDataset ReadCifar10(string folder, bool train)
    {
        var dir = Locate(folder, Cifar10Folder);
        var files = train ? Cifar10TrainFiles : ["test_batch.bin"];
        var classes = ReadClassNames(Path.Combine(dir, "batches.meta.txt"), DatasetCatalog.Cifar10.Classes);
        return Read(dir, files, labelBytes: 1, classes, "cifar10/" + (train ? "train" : "test"));
    }

    /// <summary>
    /// Reads the CIFAR-100 train or test split with its fine labels. <paramref name="folder"/> is the
    /// <c>cifar-100-binary</c> folder or the folder that contains it. Class names come from
    /// fine_label_names.txt when present, else "0".."99".
    /// </summary>
    public static InMemoryImageDataset ReadCifar100(string folder, bool train)
    {
        var dir = Locate(folder, Cifar100Folder);
        var classes = ReadClassNames(Path.Combine(dir, "fine_label_names.txt"), DatasetCatalog.Cifar100.Classes);
        return Read(dir, [train ? "train.bin" : "test.bin"], labelBytes: 2, classes, "cifar100/" + (train ? "train" : "test"));
    }

    /// <summary>
    /// Reads the class names of a meta file, one per line (blank lines ignored). A missing file gives
    /// <paramref name="fallback"/>; a file with the wrong number of names is an error.
    /// </summary>
    public static IReadOnlyList<string> ReadClassNames(string path, IReadOnlyList<string> fallback)
    {
        ArgumentNullException.ThrowIfNull(fallback);
        if (!File.Exists(path)) return fallback;
        var names = File.ReadAllLines(path).Select(l => l.Trim()).Where(l => l.Length > 0).ToArray();
        if (names.Length != fallback.Count)
            throw new DataFormatException(path, $"lists {names.Length} class names, expected {fallback.Count}");
        return names;
    }

    private static string Locate(string folder, string batchesFolder)
    {
        var nested = Path.Combine(folder, batchesFolder);
        return Directory.Exists(nested) ? nested : folder;
    }

    private static InMemoryImageDataset Read(string dir, string[] files, int labelBytes, IReadOnlyList<string> classes, string name)
    {
        var recordSize = labelBytes + Shape.Size;
        var paths = new string[files.Length];
        var counts = new int[files.Length];
        long total = 0;
        for (var f = 0; f < files.Length; f++)
        {
            var path = paths[f] = Path.Combine(dir, files[f]);
            var info = new FileInfo(path);
            if (!info.Exists)
                throw new DataFormatException(path, $"missing batch file (expected {string.Join(", ", files)} in {dir})");
            var partial = info.Length % recordSize;
            if (partial != 0)
            {
                throw new DataFormatException(path,
                    $"size {info.Length} is not a multiple of the {recordSize}-byte record: the last {partial} bytes are a partial record",
                    info.Length - partial);
            }
            if (info.Length == 0)
                throw new DataFormatException(path, "empty batch file");
            counts[f] = (int)(info.Length / recordSize);
            total += counts[f];
        }
        if (total * Shape.Size > Array.MaxLength)
            throw new DataFormatException(dir, $"{total} images are more than one array can hold");

        var pixels = GC.AllocateUninitializedArray<byte>((int)(total * Shape.Size));
        var labels = new int[total];
        var next = 0;
        for (var f = 0; f < files.Length; f++)
        {
            ReadBatch(paths[f], counts[f], labelBytes, classes.Count, pixels.AsSpan(next * Shape.Size), labels.AsSpan(next));
            next += counts[f];
        }
        return new InMemoryImageDataset(name, Shape, pixels, labels, classes);
    }

    /// <summary>Reads one batch file in large blocks of whole records, splitting labels from pixels.</summary>
    private static void ReadBatch(string path, int count, int labelBytes, int classCount, Span<byte> pixels, Span<int> labels)
    {
        var recordSize = labelBytes + Shape.Size;
        // About 1 MiB per read, always whole records, so a record never straddles two reads.
        var recordsPerBlock = Math.Max(1, (1 << 20) / recordSize);
        var block = ArrayPool<byte>.Shared.Rent(recordsPerBlock * recordSize);
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 0);
            for (var done = 0; done < count;)
            {
                var n = Math.Min(recordsPerBlock, count - done);
                var span = block.AsSpan(0, n * recordSize);
                var got = stream.ReadAtLeast(span, span.Length, throwOnEndOfStream: false);
                if (got < span.Length)
                {
                    // The file shrank since its size was checked.
                    throw new DataFormatException(path, "truncated while reading", (long)done * recordSize + got);
                }
                for (var r = 0; r < n; r++)
                {
                    var record = span.Slice(r * recordSize, recordSize);
                    // The last label byte is the one used: CIFAR-10's only label, CIFAR-100's fine label.
                    int label = record[labelBytes - 1];
                    if (label >= classCount)
                    {
                        ThrowLabelOutOfRange(path, label, classCount, (long)(done + r) * recordSize + labelBytes - 1);
                    }
                    labels[done + r] = label;
                    record[labelBytes..].CopyTo(pixels.Slice((done + r) * Shape.Size, Shape.Size));
                }
                done += n;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(block);
        }
    }

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private static void ThrowLabelOutOfRange(string path, int label, int classCount, long offset) =>
        throw new DataFormatException(path, $"label {label} is out of range for {classCount} classes (valid: 0..{classCount - 1})", offset);
}

using System.Buffers.Binary;
using System.IO.Compression;
using System.Security.Cryptography;
using Grpc.Core;
using Orchestrator.Data;
using Orchestrator.Data.Readers;
using Orchestrator.Protocol.V1;
using Orchestrator.TestSupport;
using Orchestrator.Trials;
using SkiaSharp;

namespace Orchestrator.Coordinator.FunctionalTests;

/// <summary>
/// Data delivery over real gRPC: a coordinator on loopback serves a small Fashion-MNIST-format
/// folder and an image folder from its --data-dir; the worker's <see cref="RemoteDatasetCache"/>
/// fetches them into a cache folder.
/// </summary>
public sealed class DataDeliveryTests : IAsyncLifetime
{
    // 2 000 images of random pixels gzip to ~1.5 MB: several 512 KB chunks, so a transfer can be cut midway.
    private const int TrainImages = 2000, TestImages = 50;

    private readonly string _root = Path.Combine(Path.GetTempPath(), "orch-data-" + Guid.NewGuid().ToString("N"));
    private string DataDir => Path.Combine(_root, "served");
    private string CacheDir => Path.Combine(_root, "worker", "datasets");
    private string FashionDir => Path.Combine(DataDir, "fashion-mnist");
    private TestCoordinator _coordinator = null!;

    public async Task InitializeAsync()
    {
        WriteFashionMnist(FashionDir);
        WriteImageFolder(Path.Combine(DataDir, "photos"));
        _coordinator = await TestCoordinator.StartAsync(dataDir: DataDir);
    }

    public async Task DisposeAsync()
    {
        await _coordinator.DisposeAsync();
        try { Directory.Delete(_root, recursive: true); }
        catch (IOException) { /* a leftover temp folder is harmless */ }
    }

    private RemoteDatasetCache Cache() => new(_coordinator.DataSets(), CacheDir);

    private static DataSpec Fashion() => new() { Name = "fashion-mnist", Download = false };

    [Fact]
    public async Task The_manifest_of_a_catalog_data_set_lists_its_files_with_their_sizes_and_SHA256s()
    {
        var manifest = await _coordinator.DataSets().GetManifestAsync(new GetManifestRequest { Name = "fashion-mnist" }).ResponseAsync.DefaultTimeout();

        Assert.Equal("files", manifest.Format);
        var expected = DatasetCatalog.FashionMnist.Files.Select(f => f.Name).Order(StringComparer.Ordinal);
        Assert.Equal(expected, manifest.Files.Select(f => f.Path).Order(StringComparer.Ordinal));
        foreach (var f in manifest.Files)
        {
            var path = Path.Combine(FashionDir, f.Path);
            Assert.Equal(new FileInfo(path).Length, f.Size);
            Assert.Equal(Sha256(path), f.Sha256);
        }
    }

    [Fact]
    public async Task A_fetch_downloads_every_file_and_they_read_back_identical()
    {
        var result = await Cache().FetchAsync(Fashion(), null, CancellationToken.None).DefaultTimeout();

        Assert.Equal(Path.Combine(CacheDir, "fashion-mnist"), result.Directory);
        foreach (var f in DatasetCatalog.FashionMnist.Files)
            Assert.Equal(File.ReadAllBytes(Path.Combine(FashionDir, f.Name)), File.ReadAllBytes(Path.Combine(result.Directory, f.Name)));
        Assert.Equal(Directory.GetFiles(FashionDir).Sum(f => new FileInfo(f).Length), result.BytesReceived);
        Assert.Empty(Directory.GetFiles(result.Directory, "*.part"));

        // The trial then loads from the fetched folder like from any other.
        var spec = Fashion();
        spec.Dir = result.Directory;
        var splits = await DatasetLoader.LoadAsync(spec, 1, new DatasetResolver(Path.Combine(_root, "nocache"), systemRoot: null), null, CancellationToken.None).DefaultTimeout();
        Assert.Equal(TrainImages, splits.Train.Count);
        Assert.Equal(TestImages, splits.Validation.Count);
    }

    [Fact]
    public async Task A_second_fetch_downloads_nothing_when_the_cached_files_are_right()
    {
        await Cache().FetchAsync(Fashion(), null, CancellationToken.None).DefaultTimeout();

        var again = await Cache().FetchAsync(Fashion(), null, CancellationToken.None).DefaultTimeout();

        Assert.Equal(0, again.BytesReceived);
        Assert.All(again.Files, f => Assert.Equal(0, f.BytesReceived));
    }

    [Fact]
    public async Task An_interrupted_transfer_resumes_from_the_partial_file_and_ends_with_the_right_hash()
    {
        const string images = "train-images-idx3-ubyte.gz";
        var size = new FileInfo(Path.Combine(FashionDir, images)).Length;
        using var cut = new CancellationTokenSource();
        // Cancel once the first chunk of the big file is on disk (progress is reported after each write).
        var progress = new SyncProgress(p =>
        {
            if (p.File == images && p.Bytes > 0) cut.Cancel();
        });

        var interrupted = await Record.ExceptionAsync(() => Cache().FetchAsync(Fashion(), progress, cut.Token).DefaultTimeout());

        Assert.True(interrupted is OperationCanceledException or RpcException { StatusCode: StatusCode.Cancelled }, $"unexpected: {interrupted}");
        var part = Path.Combine(CacheDir, "fashion-mnist", images + ".part");
        var partial = new FileInfo(part).Length;
        Assert.InRange(partial, 1, size - 1);
        Assert.False(File.Exists(Path.Combine(CacheDir, "fashion-mnist", images)));

        var resumed = await Cache().FetchAsync(Fashion(), null, CancellationToken.None).DefaultTimeout();

        var file = resumed.Files.Single(f => f.Path == images);
        Assert.Equal(partial, file.ResumedFrom);
        Assert.Equal(size - partial, file.BytesReceived);
        Assert.Equal(Sha256(Path.Combine(FashionDir, images)), Sha256(Path.Combine(resumed.Directory, images)));
        Assert.False(File.Exists(part));
    }

    [Fact]
    public async Task A_corrupted_cached_file_is_detected_and_downloaded_again()
    {
        const string labels = "train-labels-idx1-ubyte.gz";
        var first = await Cache().FetchAsync(Fashion(), null, CancellationToken.None).DefaultTimeout();
        var cached = Path.Combine(first.Directory, labels);
        var bytes = File.ReadAllBytes(cached);
        bytes[bytes.Length / 2] ^= 0xFF;
        File.WriteAllBytes(cached, bytes);

        var again = await Cache().FetchAsync(Fashion(), null, CancellationToken.None).DefaultTimeout();

        Assert.Equal(bytes.Length, again.Files.Single(f => f.Path == labels).BytesReceived);
        Assert.Equal(0, again.Files.Where(f => f.Path != labels).Sum(f => f.BytesReceived));
        Assert.Equal(File.ReadAllBytes(Path.Combine(FashionDir, labels)), File.ReadAllBytes(cached));
    }

    [Theory]
    [InlineData("../etc/passwd")]
    [InlineData("/etc/passwd")]
    [InlineData("fashion-mnist/../../../etc/passwd")]
    [InlineData("..")]
    public async Task A_download_path_that_leaves_the_served_folder_is_refused(string path)
    {
        var call = _coordinator.DataSets().Download(new DownloadRequest { Name = "fashion-mnist", Path = path });

        var error = await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext(CancellationToken.None).DefaultTimeout());

        Assert.Equal(StatusCode.InvalidArgument, error.StatusCode);
    }

    [Theory]
    [InlineData("../served/photos")]
    [InlineData("/etc")]
    public async Task An_imagefolder_outside_the_data_dir_is_refused(string dir)
    {
        var error = await Assert.ThrowsAsync<RpcException>(() =>
            _coordinator.DataSets().GetManifestAsync(new GetManifestRequest { Name = "imagefolder", Dir = dir, ImageSize = 16 }).ResponseAsync.DefaultTimeout());

        Assert.Equal(StatusCode.InvalidArgument, error.StatusCode);
    }

    [Fact]
    public async Task A_file_the_manifest_does_not_list_is_not_served()
    {
        File.WriteAllText(Path.Combine(FashionDir, "notes.txt"), "not data");
        var call = _coordinator.DataSets().Download(new DownloadRequest { Name = "fashion-mnist", Path = "notes.txt" });

        var error = await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext(CancellationToken.None).DefaultTimeout());

        Assert.Equal(StatusCode.NotFound, error.StatusCode);
    }

    [Fact]
    public async Task Packed_imagefolder_shards_read_back_the_labels_and_pixels_of_the_image_folder()
    {
        var spec = new DataSpec { Name = "imagefolder", Dir = "photos", ImageSize = 16 };

        var fetched = await Cache().FetchAsync(spec, null, CancellationToken.None).DefaultTimeout();

        Assert.Equal("packed", fetched.Format);
        var (train, validation) = ImageFolderDataset.OpenSplits(Path.Combine(DataDir, "photos"), 16);
        var (packedTrain, packedValidation) = PackedImageDataset.OpenSplits(fetched.Directory);
        using (packedTrain)
        using (packedValidation)
        {
            AssertSame(train, packedTrain);
            AssertSame(validation!, packedValidation!);
        }

        // DatasetLoader takes the packed folder as imagefolder data.
        var local = new DataSpec { Name = "imagefolder", Dir = fetched.Directory, ImageSize = 16 };
        var splits = await DatasetLoader.LoadAsync(local, 1, new DatasetResolver(Path.Combine(_root, "nocache"), systemRoot: null), null, CancellationToken.None).DefaultTimeout();
        Assert.Equal(train.Count, splits.Train.Count);
        Assert.Equal(["cat", "dog"], splits.Info.Classes);
        (splits.Train as IDisposable)?.Dispose();
        (splits.Validation as IDisposable)?.Dispose();

        // Packed once: a second worker gets the same shards without a re-pack.
        var again = await new RemoteDatasetCache(_coordinator.DataSets(), Path.Combine(_root, "worker2")).FetchAsync(spec, null, CancellationToken.None).DefaultTimeout();
        Assert.Equal(fetched.Files.Select(f => f.Path), again.Files.Select(f => f.Path));
    }

    [Fact]
    public async Task A_truncated_shard_is_reported_with_its_file_and_offset()
    {
        var fetched = await Cache().FetchAsync(new DataSpec { Name = "imagefolder", Dir = "photos", ImageSize = 16 }, null, CancellationToken.None).DefaultTimeout();
        var shard = PackedImageDataset.ShardsOf(fetched.Directory, PackedImageDataset.TrainSplit)[0];
        var length = new FileInfo(shard).Length - 100;
        using (var f = new FileStream(shard, FileMode.Open)) f.SetLength(length);

        var error = Assert.Throws<DataFormatException>(() => PackedImageDataset.OpenSplits(fetched.Directory));

        Assert.Equal(shard, error.File);
        Assert.Equal(length, error.Offset);
        Assert.Contains("truncated", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Packing_splits_a_set_into_shards_no_larger_than_the_limit_that_read_back_in_order()
    {
        var source = new SyntheticDataset(100, new ImageShape(3, 8, 8), 10, 7, "synthetic");
        var dir = Path.Combine(_root, "shards");

        var files = PackedImageWriter.Write(source, dir, "train", maxShardBytes: 4096, CancellationToken.None);

        Assert.True(files.Count > 1);
        Assert.All(files, f => Assert.InRange(new FileInfo(f).Length, 1, 4096));
        using var packed = PackedImageDataset.Open(files, "packed");
        AssertSame(source, packed);
    }

    private static void AssertSame(IImageDataset expected, IImageDataset actual)
    {
        Assert.Equal(expected.Count, actual.Count);
        Assert.Equal(expected.Shape, actual.Shape);
        Assert.Equal(expected.Classes, actual.Classes);
        var a = new byte[expected.Shape.Size];
        var b = new byte[expected.Shape.Size];
        for (var i = 0; i < expected.Count; i++)
        {
            Assert.Equal(expected.GetLabel(i), actual.GetLabel(i));
            expected.CopyImage(i, a);
            actual.CopyImage(i, b);
            Assert.True(a.AsSpan().SequenceEqual(b), $"image {i} differs");
        }
    }

    private static string Sha256(string path) => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path)));

    /// <summary>Writes the four Fashion-MNIST IDX files, gzipped, with random pixels and labels.</summary>
    private static void WriteFashionMnist(string dir)
    {
        Directory.CreateDirectory(dir);
        var random = new Random(42);
        foreach (var (prefix, count) in new[] { ("train", TrainImages), ("t10k", TestImages) })
        {
            var pixels = new byte[count * 28 * 28];
            random.NextBytes(pixels);
            var labels = Enumerable.Range(0, count).Select(_ => (byte)random.Next(10)).ToArray();
            WriteGzip(Path.Combine(dir, $"{prefix}-images-idx3-ubyte.gz"), Header(IdxReader.ImagesMagic, count, 28, 28), pixels);
            WriteGzip(Path.Combine(dir, $"{prefix}-labels-idx1-ubyte.gz"), Header(IdxReader.LabelsMagic, count), labels);
        }
    }

    private static byte[] Header(params int[] values)
    {
        var header = new byte[4 * values.Length];
        for (var i = 0; i < values.Length; i++) BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4 * i), values[i]);
        return header;
    }

    private static void WriteGzip(string path, byte[] header, byte[] body)
    {
        using var file = File.Create(path);
        using var gzip = new GZipStream(file, CompressionLevel.Fastest);
        gzip.Write(header);
        gzip.Write(body);
    }

    /// <summary>An image folder with train/ and val/ splits of two classes, PNGs of assorted sizes.</summary>
    private static void WriteImageFolder(string root)
    {
        var random = new Random(7);
        foreach (var (split, perClass) in new[] { ("train", 5), ("val", 2) })
        {
            foreach (var cls in new[] { "cat", "dog" })
            {
                var dir = Path.Combine(root, split, cls);
                Directory.CreateDirectory(dir);
                for (var i = 0; i < perClass; i++)
                {
                    using var bitmap = new SKBitmap(random.Next(16, 40), random.Next(16, 40));
                    for (var y = 0; y < bitmap.Height; y++)
                    for (var x = 0; x < bitmap.Width; x++)
                        bitmap.SetPixel(x, y, new SKColor((byte)random.Next(256), (byte)random.Next(256), (byte)random.Next(256)));
                    using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
                    File.WriteAllBytes(Path.Combine(dir, $"{i}.png"), data.ToArray());
                }
            }
        }
    }

    /// <summary>Reports on the caller's thread (Progress&lt;T&gt; posts to the thread pool, too late to cut a transfer at a known point).</summary>
    private sealed class SyncProgress(Action<DownloadProgress> report) : IProgress<DownloadProgress>
    {
        public void Report(DownloadProgress value) => report(value);
    }
}

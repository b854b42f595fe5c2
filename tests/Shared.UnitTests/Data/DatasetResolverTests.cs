using Orchestrator.Data.Readers;

namespace Orchestrator.Data.Tests;

public sealed class DatasetResolverTests : IDisposable
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);
    private readonly TempDir _dir = new();
    private readonly CancellationTokenSource _cts = new(Deadline);

    public void Dispose()
    {
        _cts.Dispose();
        _dir.Dispose();
    }

    private static DatasetInfo Toy(params DatasetFile[] files) =>
        new("toy", new ImageShape(1, 2, 2), ["a", "b"], [0.5f], [0.5f], files);

    private static readonly DatasetInfo ToyInfo = Toy(new DatasetFile("a.bin", "http://example.invalid/files/a.bin", null));

    private string Cache => _dir.Combine("cache");
    private string System => _dir.Combine("system");

    private DatasetResolver Resolver(string? mirror = null) =>
        new(cacheRoot: Cache, systemRoot: System, mirror: mirror, stallTimeout: TimeSpan.FromSeconds(10));

    private string Put(string folder, string file, string content = "x")
    {
        Directory.CreateDirectory(folder);
        var path = Path.Combine(folder, file);
        File.WriteAllText(path, content);
        return path;
    }

    [Fact]
    public async Task An_explicit_folder_wins_over_the_cache_and_the_system_folder()
    {
        var explicitPath = Put(_dir.Combine("mine"), "a.bin");
        Put(Path.Combine(Cache, "toy"), "a.bin");
        Put(Path.Combine(System, "toy"), "a.bin");

        var found = await Resolver().ResolveAsync(ToyInfo, _dir.Combine("mine"), download: false, null, _cts.Token);

        Assert.Equal("--data-dir", found.Source);
        Assert.Equal(explicitPath, found.PathOf("a.bin"));
    }

    [Fact]
    public async Task An_explicit_folder_may_hold_the_data_set_in_a_folder_named_after_it()
    {
        var path = Put(_dir.Combine("all", "toy"), "a.bin");

        var found = await Resolver().ResolveAsync(ToyInfo, _dir.Combine("all"), download: false, null, _cts.Token);

        Assert.Equal(path, found.PathOf("a.bin"));
    }

    [Fact]
    public async Task The_cache_wins_over_the_system_folder_and_an_explicit_folder_without_the_files()
    {
        var cached = Put(Path.Combine(Cache, "toy"), "a.bin");
        Put(Path.Combine(System, "toy"), "a.bin");
        Directory.CreateDirectory(_dir.Combine("empty"));

        var found = await Resolver().ResolveAsync(ToyInfo, _dir.Combine("empty"), download: false, null, _cts.Token);

        Assert.Equal("cache", found.Source);
        Assert.Equal(cached, found.PathOf("a.bin"));
    }

    [Fact]
    public async Task The_system_folder_is_used_when_nothing_else_has_the_files()
    {
        var system = Put(Path.Combine(System, "toy"), "a.bin");

        var found = await Resolver().ResolveAsync(ToyInfo, null, download: false, null, _cts.Token);

        Assert.Equal("system", found.Source);
        Assert.Equal(system, found.PathOf("a.bin"));
    }

    [Fact]
    public async Task A_gunzipped_copy_stands_in_for_a_gz_file()
    {
        var info = Toy(new DatasetFile("t10k-labels-idx1-ubyte.gz", null, null));
        var plain = Put(_dir.Combine("mine"), "t10k-labels-idx1-ubyte");

        var found = await Resolver().ResolveAsync(info, _dir.Combine("mine"), download: false, null, _cts.Token);

        Assert.Equal(plain, found.PathOf("t10k-labels-idx1-ubyte.gz"));
    }

    [Fact]
    public void The_cache_root_follows_ORCH_DATA_DIR_then_XDG_CACHE_HOME_then_home()
    {
        var both = new Dictionary<string, string?> { ["ORCH_DATA_DIR"] = "/data", ["XDG_CACHE_HOME"] = "/xdg" };
        var xdgOnly = new Dictionary<string, string?> { ["XDG_CACHE_HOME"] = "/xdg" };
        var none = new Dictionary<string, string?>();

        Assert.Equal("/data", DatasetResolver.DefaultCacheRoot(k => both.GetValueOrDefault(k), "/home/u"));
        Assert.Equal("/xdg/orchestrator/datasets", DatasetResolver.DefaultCacheRoot(k => xdgOnly.GetValueOrDefault(k), "/home/u"));
        Assert.Equal("/home/u/.cache/orchestrator/datasets", DatasetResolver.DefaultCacheRoot(k => none.GetValueOrDefault(k), "/home/u"));
    }

    [Fact]
    public void A_mirror_replaces_everything_up_to_the_file_name()
    {
        var file = new DatasetFile("cifar-10-batches-bin", "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz", null, IsArchive: true);

        Assert.Equal(new Uri("http://127.0.0.1:9/m/cifar-10-binary.tar.gz"), Resolver("http://127.0.0.1:9/m").DownloadUri(file));
        Assert.Equal(new Uri(file.Url!), Resolver().DownloadUri(file));
    }

    [Fact]
    public async Task A_download_from_the_mirror_lands_in_the_cache_verified_and_reports_progress()
    {
        using var server = new LocalFileServer();
        var content = new byte[3 << 20];
        new Random(5).NextBytes(content);
        server.Add("a.bin", content);
        var info = Toy(new DatasetFile("a.bin", "http://example.invalid/files/a.bin", TestFiles.Md5(content)));
        var reports = new List<DownloadProgress>();
        var progress = new SyncProgress<DownloadProgress>(reports.Add);

        var found = await Resolver(server.BaseUrl).ResolveAsync(info, null, download: true, progress, _cts.Token);

        Assert.Equal("download", found.Source);
        Assert.Equal(Path.Combine(Cache, "toy", "a.bin"), found.PathOf("a.bin"));
        Assert.Equal(content, await File.ReadAllBytesAsync(found.PathOf("a.bin"), _cts.Token));
        Assert.Equal(["a.bin"], Directory.GetFileSystemEntries(Path.Combine(Cache, "toy")).Select(Path.GetFileName));
        Assert.Equal(new DownloadProgress("a.bin", 0, content.Length), reports[0]);
        Assert.Equal(new DownloadProgress("a.bin", content.Length, content.Length), reports[^1]);
        Assert.True(reports.Count >= 4, $"{reports.Count} progress reports for 3 MiB");
        Assert.True(reports.Zip(reports.Skip(1)).All(p => p.Second.Bytes > p.First.Bytes), "progress must grow");
    }

    [Fact]
    public async Task A_download_with_the_wrong_md5_leaves_no_file_and_says_expected_and_actual()
    {
        using var server = new LocalFileServer();
        var content = "not the real data"u8.ToArray();
        server.Add("a.bin", content);
        var info = Toy(new DatasetFile("a.bin", "http://example.invalid/files/a.bin", "0123456789abcdef0123456789abcdef"));

        var ex = await Assert.ThrowsAsync<DatasetNotFoundException>(() =>
            Resolver(server.BaseUrl).ResolveAsync(info, null, download: true, null, _cts.Token));

        Assert.Contains("MD5 mismatch, expected 0123456789abcdef0123456789abcdef", ex.Message);
        Assert.Contains("but the download has " + TestFiles.Md5(content), ex.Message);
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(Cache, "toy")));
    }

    [Fact]
    public async Task A_downloaded_tar_gz_archive_is_unpacked_into_the_cache_and_readable()
    {
        using var server = new LocalFileServer();
        var batch = TestFiles.CifarRecords([[3], [7]], (r, p) => (byte)(r + p));
        var files = new Dictionary<string, byte[]>
        {
            ["cifar-10-batches-bin/test_batch.bin"] = batch,
            ["cifar-10-batches-bin/readme.html"] = "<p>readme</p>"u8.ToArray(),
        };
        var archive = TestFiles.TarGz(files);
        server.Add("cifar-10-binary.tar.gz", archive);
        var info = Toy(new DatasetFile("cifar-10-batches-bin", "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz", TestFiles.Md5(archive), IsArchive: true));

        var found = await Resolver(server.BaseUrl).ResolveAsync(info, null, download: true, null, _cts.Token);

        var folder = found.PathOf("cifar-10-batches-bin");
        Assert.Equal(Path.Combine(Cache, "toy", "cifar-10-batches-bin"), folder);
        Assert.Equal(batch, await File.ReadAllBytesAsync(Path.Combine(folder, "test_batch.bin"), _cts.Token));
        Assert.Equal([3, 7], CifarReader.ReadCifar10(folder, train: false).Labels.ToArray());
        // Neither the archive nor the scratch folder is left behind.
        Assert.Equal(["cifar-10-batches-bin"], Directory.GetFileSystemEntries(Path.Combine(Cache, "toy")).Select(Path.GetFileName));
    }

    [Fact]
    public async Task A_missing_file_on_the_server_is_reported_with_its_status()
    {
        using var server = new LocalFileServer();

        var ex = await Assert.ThrowsAsync<DatasetNotFoundException>(() =>
            Resolver(server.BaseUrl).ResolveAsync(ToyInfo, null, download: true, null, _cts.Token));

        Assert.Contains(server.BaseUrl + "a.bin answered 404", ex.Message);
        Assert.Single(server.Requests);
    }

    [Fact]
    public async Task Nothing_is_downloaded_when_download_is_off()
    {
        using var server = new LocalFileServer();
        server.Add("a.bin", [1]);

        var ex = await Assert.ThrowsAsync<DatasetNotFoundException>(() =>
            Resolver(server.BaseUrl).ResolveAsync(ToyInfo, null, download: false, null, _cts.Token));

        Assert.Empty(server.Requests);
        Assert.Contains("download: turned off", ex.Message);
    }

    [Fact]
    public async Task The_not_found_message_lists_every_place_looked_and_how_to_get_the_data()
    {
        var mine = _dir.Dir("mine");
        Put(mine, "train-images-idx3-ubyte.gz");

        var ex = await Assert.ThrowsAsync<DatasetNotFoundException>(() =>
            Resolver().ResolveAsync(DatasetCatalog.FashionMnist, mine, download: false, null, _cts.Token));

        var message = ex.Message;
        Assert.Contains("Data set 'fashion-mnist' was not found", message);
        Assert.Contains($"--data-dir {mine}: missing train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz", message);
        Assert.Contains($"--data-dir {Path.Combine(mine, "fashion-mnist")}: folder does not exist", message);
        Assert.Contains($"cache {Path.Combine(Cache, "fashion-mnist")}: folder does not exist", message);
        Assert.Contains($"system {Path.Combine(System, "fashion-mnist")}: folder does not exist", message);
        Assert.Contains("download: turned off", message);
        Assert.Contains("apt-get install dataset-fashion-mnist", message);
        Assert.Contains("--data-dir DIR", message);
        Assert.Contains("ORCH_DATASET_MIRROR", message);
    }

    [Fact]
    public async Task An_unreachable_server_is_reported_as_a_failed_download()
    {
        // A port that was free a moment ago: nothing listens there, so the connection is refused.
        string url;
        using (var server = new LocalFileServer()) url = server.BaseUrl;

        var ex = await Assert.ThrowsAsync<DatasetNotFoundException>(() =>
            Resolver(url).ResolveAsync(ToyInfo, null, download: true, null, _cts.Token));

        Assert.Contains($"download into {Path.Combine(Cache, "toy")}: {url}a.bin:", ex.Message);
        Assert.False(Directory.Exists(Path.Combine(Cache, "toy")) && Directory.EnumerateFileSystemEntries(Path.Combine(Cache, "toy")).Any());
    }

    /// <summary>Reports on the calling thread (Progress&lt;T&gt; posts to the thread pool, so its reports may arrive late or out of order).</summary>
    private sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}

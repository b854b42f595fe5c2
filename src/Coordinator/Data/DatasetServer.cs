using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Options;
using Orchestrator.Data;
using Orchestrator.Data.Readers;

namespace Orchestrator.Coordinator.Data;

/// <summary>Where the coordinator finds the data sets it serves (the host sets it from the Data and State settings).</summary>
public sealed class DatasetServerOptions
{
    /// <summary>The coordinator's <c>--data-dir</c>: searched first for catalog data sets, and the only root imagefolder data is served from. Null: none.</summary>
    public string? DataDir { get; set; }

    /// <summary>Folder of packed imagefolder shards (default &lt;state dir&gt;/data/packed).</summary>
    public string PackRoot { get; set; } = Path.Combine(".orch", "data", "packed");

    /// <summary>Largest shard written when packing.</summary>
    public long MaxShardBytes { get; set; } = PackedImageWriter.DefaultMaxShardBytes;

    /// <summary>Cache root of the resolver; null: <see cref="DatasetResolver.DefaultCacheRoot()"/>.</summary>
    public string? CacheRoot { get; set; }

    /// <summary>System data set folder; null skips it.</summary>
    public string? SystemRoot { get; set; } = DatasetResolver.DefaultSystemRoot;
}

/// <summary>A data set as served: its manifest entries, each with the file it is read from.</summary>
public sealed record ServedDataset(string Name, string Id, string Format, IReadOnlyList<ServedFile> Files)
{
    /// <summary>The file listed as <paramref name="path"/>, or null.</summary>
    public ServedFile? Find(string path) => Files.FirstOrDefault(f => string.Equals(f.Path, path, StringComparison.Ordinal));
}

/// <summary>One served file: its manifest path, where it is on this machine, its size and SHA-256.</summary>
public sealed record ServedFile(string Path, string FullPath, long Size, string Sha256);

/// <summary>A data delivery request the coordinator cannot serve as asked (unknown name, unsafe folder, no --data-dir).</summary>
public sealed class DataRequestException(string message) : Exception(message);

/// <summary>
/// The data sets a coordinator serves to workers. Catalog data sets come from the coordinator's
/// own <see cref="DatasetResolver"/> (its --data-dir, cache, /usr/share/datasets, download);
/// imagefolder data under --data-dir is packed once per (folder, image size) into shards under
/// the state folder, and those are served. SHA-256s are computed once per file version
/// (path, size, modification time) and kept in memory.
/// </summary>
public sealed partial class DatasetServer(IOptions<DatasetServerOptions> options, IHostApplicationLifetime lifetime, ILogger<DatasetServer> logger)
{
    /// <summary>Manifest format of catalog data sets: their own files.</summary>
    public const string FilesFormat = "files";

    /// <summary>Manifest format of imagefolder data: packed shards.</summary>
    public const string PackedFormat = "packed";

    private readonly DatasetServerOptions _options = options.Value;
    private readonly ConcurrentDictionary<string, HashEntry> _hashes = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Lazy<Task<string>>> _packing = new(StringComparer.Ordinal);

    /// <summary>
    /// The data set a trial's <c>data:</c> section names, resolved (or packed) on this machine.
    /// Blocks the caller, not the packing, on <paramref name="ct"/>: a pack that has begun
    /// finishes for the next caller even when this one gives up.
    /// </summary>
    /// <exception cref="DataRequestException">Unknown name, unsafe folder, or imagefolder without --data-dir.</exception>
    /// <exception cref="DatasetNotFoundException">The data set is not on this machine.</exception>
    /// <exception cref="DataFormatException">imagefolder data that cannot be read.</exception>
    public async Task<ServedDataset> GetAsync(string name, string dir, int imageSize, bool allowDownload, CancellationToken ct)
    {
        if (name == "imagefolder") return await GetImageFolderAsync(dir, imageSize, ct).ConfigureAwait(false);
        var info = DatasetCatalog.Find(name)
            ?? throw new DataRequestException($"'{name}' is not a data set the coordinator serves (fashion-mnist, mnist, cifar10, cifar100, imagefolder)");
        var resolver = new DatasetResolver(_options.CacheRoot, _options.SystemRoot);
        var location = await resolver.ResolveAsync(info, _options.DataDir, allowDownload, null, ct).ConfigureAwait(false);

        var files = new List<ServedFile>();
        foreach (var file in info.Files)
        {
            var path = location.PathOf(file.Name);
            if (file.IsArchive)
            {
                // An unpacked folder (CIFAR): every file in it, under the folder's catalog name so
                // that the worker's resolver finds the same layout.
                foreach (var inner in Directory.EnumerateFiles(path, "*", SearchOption.AllDirectories)
                             .Where(f => !DataPaths.Relative(path, f).Split('/').Any(s => s.StartsWith('.')))
                             .Order(StringComparer.Ordinal))
                {
                    files.Add(await DescribeAsync(file.Name + "/" + DataPaths.Relative(path, inner), inner, ct).ConfigureAwait(false));
                }
            }
            else
            {
                // Keep the name found on disk: a gunzipped copy is served as such.
                files.Add(await DescribeAsync(Path.GetFileName(path), path, ct).ConfigureAwait(false));
            }
        }
        return new ServedDataset(name, name, FilesFormat, files);
    }

    private async Task<ServedDataset> GetImageFolderAsync(string dir, int imageSize, CancellationToken ct)
    {
        if (_options.DataDir is null)
            throw new DataRequestException("the coordinator has no --data-dir, so it serves no imagefolder data");
        if (DataPaths.Problem(dir) is { } problem)
            throw new DataRequestException("data.dir: " + problem);
        ArgumentOutOfRangeException.ThrowIfNegative(imageSize);
        var size = imageSize == 0 ? DatasetLoader.DefaultImageFolderSize : imageSize;
        var root = DataPaths.Combine(_options.DataDir, dir);
        if (!Directory.Exists(root))
            throw new DatasetNotFoundException($"image folder '{dir}' does not exist under the coordinator's --data-dir");

        var id = PackId(dir, size);
        // One pack per (folder, size) for the coordinator's lifetime; a failed pack is forgotten
        // so that fixing the folder and asking again works.
        var lazy = _packing.GetOrAdd(id, _ => new Lazy<Task<string>>(() => Task.Run(() => Pack(root, id, size, lifetime.ApplicationStopping), CancellationToken.None)));
        string packed;
        try
        {
            packed = await lazy.Value.WaitAsync(ct).ConfigureAwait(false);
        }
        catch (Exception) when (lazy.Value.IsFaulted || lazy.Value.IsCanceled)
        {
            _packing.TryRemove(new KeyValuePair<string, Lazy<Task<string>>>(id, lazy));
            throw;
        }

        var files = new List<ServedFile>();
        foreach (var split in new[] { PackedImageDataset.TrainSplit, PackedImageDataset.ValidationSplit })
        {
            foreach (var shard in PackedImageDataset.ShardsOf(packed, split))
                files.Add(await DescribeAsync(Path.GetFileName(shard), shard, ct).ConfigureAwait(false));
        }
        return new ServedDataset("imagefolder", id, PackedFormat, files);
    }

    /// <summary>Packs the image folder at <paramref name="root"/> unless an earlier run did; returns the shard folder.</summary>
    private string Pack(string root, string id, int size, CancellationToken ct)
    {
        var target = Path.Combine(_options.PackRoot, id);
        // The folder appears only complete (moved into place at the end), so its presence means done.
        if (Directory.Exists(target)) return target;
        Directory.CreateDirectory(_options.PackRoot);
        var scratch = Path.Combine(_options.PackRoot, $".{id}.{Guid.NewGuid():N}.tmp");
        try
        {
            Log.Packing(logger, root, size, target);
            var (train, validation) = ImageFolderDataset.OpenSplits(root, size);
            var count = PackedImageWriter.Write(train, scratch, PackedImageDataset.TrainSplit, _options.MaxShardBytes, ct).Count;
            if (validation is not null)
                count += PackedImageWriter.Write(validation, scratch, PackedImageDataset.ValidationSplit, _options.MaxShardBytes, ct).Count;
            File.WriteAllText(Path.Combine(scratch, "SOURCE"), $"{root}\nimageSize {size}\n");
            Directory.Move(scratch, target);
            Log.Packed(logger, root, train.Count + (validation?.Count ?? 0), count);
            return target;
        }
        catch (AggregateException ex) when (ex.InnerExceptions.Count > 0 && ex.InnerExceptions[0] is DataFormatException format)
        {
            // Parallel decoding wraps the decoder's error; the first bad file is the message.
            throw new DataFormatException(format.File, format.Problem, format.Offset, ex);
        }
        finally
        {
            if (Directory.Exists(scratch))
            {
                try { Directory.Delete(scratch, recursive: true); }
                catch (IOException) { /* a hidden leftover is ignored by every listing */ }
            }
        }
    }

    /// <summary>A stable folder name for (folder, size): different folders or sizes never share shards.</summary>
    private static string PackId(string dir, int size) =>
        "imagefolder-" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes($"{dir}\n{size}")))[..16] + "-" + size;

    /// <summary>The manifest entry of a file, hashing it only when this version of it was not hashed before.</summary>
    private async Task<ServedFile> DescribeAsync(string path, string fullPath, CancellationToken ct)
    {
        var info = new FileInfo(fullPath);
        var stamp = new HashEntry(info.Length, info.LastWriteTimeUtc, "");
        if (_hashes.TryGetValue(fullPath, out var known) && known.Length == stamp.Length && known.Modified == stamp.Modified)
            return new ServedFile(path, fullPath, known.Length, known.Sha256);
        var stream = new FileStream(fullPath, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, useAsync: true);
        string sha;
        await using (stream.ConfigureAwait(false))
            sha = Convert.ToHexStringLower(await SHA256.HashDataAsync(stream, ct).ConfigureAwait(false));
        _hashes[fullPath] = stamp with { Sha256 = sha };
        return new ServedFile(path, fullPath, stamp.Length, sha);
    }

    private readonly record struct HashEntry(long Length, DateTime Modified, string Sha256);

    private static partial class Log
    {
        [LoggerMessage(LogEventIds.Data + 1, LogLevel.Information, "Packing image folder {Root} at {Size} px into {Target}")]
        public static partial void Packing(ILogger logger, string root, int size, string target);

        [LoggerMessage(LogEventIds.Data + 2, LogLevel.Information, "Packed {Root}: {Images} images in {Shards} shards")]
        public static partial void Packed(ILogger logger, string root, int images, int shards);
    }
}

using System.Security.Cryptography;
using Grpc.Core;
using Orchestrator.Protocol.V1;
using Orchestrator.Trials;

namespace Orchestrator.Data;

/// <summary>What a fetch did with one file of the manifest.</summary>
/// <param name="Path">The manifest path.</param>
/// <param name="Size">Its size.</param>
/// <param name="ResumedFrom">Bytes of a partial file kept from an earlier, interrupted transfer (0: started afresh).</param>
/// <param name="BytesReceived">Bytes transferred by this fetch; 0 when the cached copy was already right.</param>
public sealed record FetchedFile(string Path, long Size, long ResumedFrom, long BytesReceived);

/// <summary>The local folder a data set was fetched into, and what was transferred.</summary>
public sealed record FetchResult(string Directory, string Format, IReadOnlyList<FetchedFile> Files)
{
    /// <summary>Bytes transferred in all.</summary>
    public long BytesReceived => Files.Sum(f => f.BytesReceived);
}

/// <summary>
/// Fetches data sets from the coordinator (the DataSets service) into a local cache folder, one
/// folder per data set: <c>&lt;cache root&gt;/&lt;name&gt;</c>, or <c>&lt;cache root&gt;/&lt;manifest id&gt;</c> for
/// packed imagefolder data. A file already there with the manifest's size and SHA-256 is kept;
/// any other is fetched to <c>&lt;file&gt;.part</c>, resumed from that file's length when an earlier
/// transfer broke off, checked against the SHA-256 and only then renamed into place, so the cache
/// never holds a partial or wrong file under a real name. Point <see cref="DataSpec.Dir"/> at the
/// folder returned and <see cref="DatasetLoader"/> reads it like any other.
/// </summary>
public sealed class RemoteDatasetCache
{
    /// <summary>A transfer fails when no chunk arrives for this long (default).</summary>
    public static readonly TimeSpan DefaultStallTimeout = TimeSpan.FromSeconds(60);

    // A manifest may make the coordinator download or pack the data set first: minutes.
    private static readonly TimeSpan ManifestDeadline = TimeSpan.FromMinutes(30);
    private static readonly TimeSpan TransferDeadline = TimeSpan.FromHours(1);
    private static readonly TimeSpan LockPoll = TimeSpan.FromMilliseconds(200);

    // A broken stream is resumed this many times in one fetch before the error is reported.
    private const int MaxAttempts = 3;
    private const int WriteBufferSize = 1 << 20;

    private readonly DataSets.DataSetsClient _client;
    private readonly Metadata _headers;
    private readonly TimeSpan _stallTimeout;

    /// <param name="client">A client of the coordinator's DataSets service.</param>
    /// <param name="cacheRoot">Folder that holds one folder per fetched data set (a worker uses &lt;work dir&gt;/datasets).</param>
    /// <param name="headers">Headers for every call (the bearer token).</param>
    /// <param name="stallTimeout">A transfer fails when no chunk arrives for this long; default <see cref="DefaultStallTimeout"/>.</param>
    public RemoteDatasetCache(DataSets.DataSetsClient client, string cacheRoot, Metadata? headers = null, TimeSpan? stallTimeout = null)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentException.ThrowIfNullOrEmpty(cacheRoot);
        _client = client;
        CacheRoot = cacheRoot;
        _headers = headers ?? [];
        _stallTimeout = stallTimeout ?? DefaultStallTimeout;
    }

    /// <summary>The folder that holds one folder per fetched data set.</summary>
    public string CacheRoot { get; }

    /// <summary>
    /// Whether <paramref name="spec"/> is data the coordinator delivers: a catalog data set with no
    /// <see cref="DataSpec.Dir"/>, or imagefolder data whose <see cref="DataSpec.Dir"/> is relative
    /// (to the coordinator's --data-dir). A trial that names a folder of its own (any folder for a
    /// catalog data set, an absolute one for imagefolder) reads it where it runs, as before;
    /// synthetic data is generated, not fetched.
    /// </summary>
    public static bool CanFetch(DataSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (spec.Name == "imagefolder") return !string.IsNullOrEmpty(spec.Dir) && !Path.IsPathRooted(spec.Dir);
        return DatasetCatalog.Find(spec.Name) is not null && string.IsNullOrEmpty(spec.Dir);
    }

    /// <summary>
    /// Brings the data set <paramref name="spec"/> names into the cache and returns its folder.
    /// For imagefolder, <see cref="DataSpec.Dir"/> is the folder relative to the coordinator's
    /// --data-dir. Progress is reported per chunk.
    /// </summary>
    /// <exception cref="DatasetNotFoundException">The coordinator does not have the data set, or refused the request; the message says why.</exception>
    /// <exception cref="DataFormatException">A file arrived with the wrong size or SHA-256 twice in a row.</exception>
    /// <exception cref="RpcException">The coordinator is unreachable, or a transfer broke off more than twice (the partial file stays for the next try).</exception>
    public async Task<FetchResult> FetchAsync(DataSpec spec, IProgress<DownloadProgress>? progress, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (!CanFetch(spec))
            throw new DatasetNotFoundException($"data set '{spec.Name}' (data.dir '{spec.Dir}') is not fetched from the coordinator: see RemoteDatasetCache.CanFetch");
        var isFolder = spec.Name == "imagefolder";
        // For imagefolder data.dir names the folder on the coordinator; it never names a local folder here.
        var request = new GetManifestRequest
        {
            Name = spec.Name,
            Dir = isFolder ? spec.Dir ?? "" : "",
            ImageSize = isFolder ? spec.ImageSize ?? 0 : 0,
            AllowDownload = spec.Download,
        };
        DatasetManifest manifest;
        try
        {
            manifest = await _client.GetManifestAsync(request, _headers, DateTime.UtcNow + ManifestDeadline, ct).ResponseAsync.ConfigureAwait(false);
        }
        catch (RpcException e) when (IsPermanent(e.StatusCode))
        {
            throw new DatasetNotFoundException($"Fetching data set '{spec.Name}' from the coordinator: {e.Status.Detail}", e);
        }

        // The manifest decides where files land on this machine: it must not point elsewhere.
        if (!DataPaths.IsSafe(manifest.Id) || manifest.Id.Contains('/', StringComparison.Ordinal))
            throw new DatasetNotFoundException($"The coordinator's manifest of '{spec.Name}' has an unusable id '{manifest.Id}'");
        foreach (var f in manifest.Files)
        {
            if (DataPaths.Problem(f.Path) is { } problem)
                throw new DatasetNotFoundException($"The coordinator's manifest of '{spec.Name}' lists an unsafe path: {problem}");
        }

        var dir = Path.Combine(CacheRoot, manifest.Id);
        Directory.CreateDirectory(dir);
        await using var folderLock = await LockAsync(dir, ct).ConfigureAwait(false);
        RemoveStrays(dir, manifest);
        var results = new List<FetchedFile>(manifest.Files.Count);
        foreach (var file in manifest.Files)
            results.Add(await FetchFileAsync(request, file, dir, progress, ct).ConfigureAwait(false));
        return new FetchResult(dir, manifest.Format, results);
    }

    private async Task<FetchedFile> FetchFileAsync(GetManifestRequest dataset, ManifestFile file, string dir, IProgress<DownloadProgress>? progress, CancellationToken ct)
    {
        var target = DataPaths.Combine(dir, file.Path);
        var part = target + ".part";
        Directory.CreateDirectory(Path.GetDirectoryName(target)!);

        if (File.Exists(target))
        {
            if (new FileInfo(target).Length == file.Size && await Sha256Async(target, ct).ConfigureAwait(false) == file.Sha256)
                return new FetchedFile(file.Path, file.Size, 0, 0);
            // Damaged, or an older version of the file: fetch it again.
            File.Delete(target);
        }

        long resumedFrom = 0, received = 0;
        var hashFailures = 0;
        for (var attempt = 1; ; attempt++)
        {
            var have = File.Exists(part) ? new FileInfo(part).Length : 0;
            if (have > file.Size)
            {
                File.Delete(part);
                have = 0;
            }
            if (attempt == 1) resumedFrom = have;
            try
            {
                if (have < file.Size)
                    received += await ReceiveAsync(dataset, file, part, have, progress, ct).ConfigureAwait(false);
            }
            catch (RpcException e) when (!ct.IsCancellationRequested && attempt < MaxAttempts && e.StatusCode is StatusCode.Unavailable or StatusCode.Internal or StatusCode.DeadlineExceeded or StatusCode.Aborted)
            {
                // The partial file keeps what arrived; the next attempt continues from its length.
                continue;
            }

            var sha = await Sha256Async(part, ct).ConfigureAwait(false);
            if (sha == file.Sha256)
            {
                File.Move(part, target, overwrite: true);
                return new FetchedFile(file.Path, file.Size, resumedFrom, received);
            }
            // A bad partial file (written by a crashed run, or corrupted) cannot be trusted at
            // any offset: start over once, then give up.
            File.Delete(part);
            if (++hashFailures == 2)
                throw new DataFormatException(target, $"arrived twice with SHA-256 {sha}, the coordinator's manifest says {file.Sha256}");
        }
    }

    /// <summary>Appends the rest of <paramref name="file"/> from <paramref name="offset"/> to <paramref name="part"/>; returns the bytes received.</summary>
    private async Task<long> ReceiveAsync(GetManifestRequest dataset, ManifestFile file, string part, long offset, IProgress<DownloadProgress>? progress, CancellationToken ct)
    {
        var request = new DownloadRequest { Name = dataset.Name, Dir = dataset.Dir, ImageSize = dataset.ImageSize, Path = file.Path, Offset = offset };
        using var stall = CancellationTokenSource.CreateLinkedTokenSource(ct);
        stall.CancelAfter(_stallTimeout);
        using var call = _client.Download(request, _headers, DateTime.UtcNow + TransferDeadline, stall.Token);
        var output = new FileStream(part, FileMode.OpenOrCreate, FileAccess.Write, FileShare.None, WriteBufferSize, useAsync: true);
        var position = offset;
        await using (output.ConfigureAwait(false))
        {
            output.Position = offset;
            try
            {
                progress?.Report(new DownloadProgress(file.Path, position, file.Size));
                while (await call.ResponseStream.MoveNext(stall.Token).ConfigureAwait(false))
                {
                    // Re-arming the timer before each read turns it into "no data for this long".
                    stall.CancelAfter(_stallTimeout);
                    var chunk = call.ResponseStream.Current;
                    if (chunk.Offset != position || chunk.TotalSize != file.Size || position + chunk.Data.Length > file.Size)
                    {
                        throw new DataFormatException(part,
                            $"the coordinator sent bytes {chunk.Offset}..{chunk.Offset + chunk.Data.Length} of {chunk.TotalSize} where {position} of {file.Size} was expected", position);
                    }
                    await output.WriteAsync(chunk.Data.Memory, ct).ConfigureAwait(false);
                    position += chunk.Data.Length;
                    progress?.Report(new DownloadProgress(file.Path, position, file.Size));
                }
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.Cancelled && !ct.IsCancellationRequested && stall.IsCancellationRequested)
            {
                throw new RpcException(new Status(StatusCode.DeadlineExceeded, $"no data for {_stallTimeout.TotalSeconds:0} s while fetching {file.Path}"));
            }
            catch (RpcException e) when (IsPermanent(e.StatusCode))
            {
                throw new DatasetNotFoundException($"Fetching '{file.Path}' of '{dataset.Name}' from the coordinator: {e.Status.Detail}", e);
            }
            finally
            {
                // Whatever arrived is kept on disk: that is what a later attempt resumes from.
                await output.FlushAsync(CancellationToken.None).ConfigureAwait(false);
            }
            output.Flush(flushToDisk: true);
        }
        if (position != file.Size)
            throw new RpcException(new Status(StatusCode.Aborted, $"the transfer of {file.Path} ended at byte {position} of {file.Size}"));
        return position - offset;
    }

    private static bool IsPermanent(StatusCode code) =>
        code is StatusCode.NotFound or StatusCode.InvalidArgument or StatusCode.FailedPrecondition or StatusCode.PermissionDenied or StatusCode.OutOfRange;

    private static async Task<string> Sha256Async(string path, CancellationToken ct)
    {
        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, WriteBufferSize, useAsync: true);
        await using (stream.ConfigureAwait(false))
            return Convert.ToHexStringLower(await SHA256.HashDataAsync(stream, ct).ConfigureAwait(false));
    }

    /// <summary>
    /// Deletes files of the folder the manifest does not list (an older pack's extra shards would
    /// otherwise be read as data), keeping the partial files of listed ones.
    /// </summary>
    private static void RemoveStrays(string dir, DatasetManifest manifest)
    {
        var keep = new HashSet<string>(StringComparer.Ordinal) { LockName };
        foreach (var f in manifest.Files)
        {
            keep.Add(f.Path);
            keep.Add(f.Path + ".part");
        }
        foreach (var path in Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories))
        {
            if (!keep.Contains(DataPaths.Relative(dir, path))) File.Delete(path);
        }
    }

    private const string LockName = ".lock";

    /// <summary>
    /// Takes the folder's lock file, so that two trials (or two workers sharing a work dir) never
    /// write the same partial file at once; waits while another holds it.
    /// </summary>
    private static async Task<FileStream> LockAsync(string dir, CancellationToken ct)
    {
        var path = Path.Combine(dir, LockName);
        while (true)
        {
            try
            {
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.None);
            }
            catch (IOException)
            {
                await Task.Delay(LockPoll, ct).ConfigureAwait(false);
            }
        }
    }
}

using System.Text;

namespace Orchestrator.Data;

/// <summary>How far a data set download has come: <paramref name="Bytes"/> of <paramref name="File"/> so far, of <paramref name="TotalBytes"/> when the server said.</summary>
public readonly record struct DownloadProgress(string File, long Bytes, long? TotalBytes);

/// <summary>Where the files of a data set were found: the folder, which place it was, and the full path of each <see cref="DatasetFile"/> by name.</summary>
public sealed record DatasetLocation(string Directory, string Source, IReadOnlyDictionary<string, string> Paths)
{
    /// <summary>The full path of the file (or unpacked folder) named <paramref name="fileName"/> in <see cref="DatasetInfo.Files"/>.</summary>
    public string PathOf(string fileName) => Paths[fileName];
}

/// <summary>
/// Finds the files of a catalog data set (<see cref="DatasetInfo.Files"/>), looking in order at an
/// explicit folder (<c>data.dir</c> / <c>--data-dir</c>), the cache folder, the system folder
/// (<c>/usr/share/datasets/&lt;name&gt;</c>, where Debian's dataset packages install), and finally
/// downloading into the cache. Downloads go to a temporary file that is checked against the
/// catalog's MD5 and only then renamed into place, so the cache never holds a partial or bad
/// file; archives are unpacked the same way, into a temporary folder that is then moved.
/// </summary>
public sealed partial class DatasetResolver
{
    /// <summary>Environment variable that sets the cache root (data sets go to <c>$ORCH_DATA_DIR/&lt;name&gt;</c>).</summary>
    public const string DataDirVariable = Configuration.EnvironmentVariables.DataDir;

    /// <summary>Environment variable that replaces the official URLs' scheme, host and path up to the file name.</summary>
    public const string MirrorVariable = Configuration.EnvironmentVariables.DatasetMirror;

    /// <summary>Where Debian's dataset-* packages install data sets.</summary>
    public const string DefaultSystemRoot = "/usr/share/datasets";

    private const int CopyBufferSize = 1 << 16;
    private const long ProgressStep = 1 << 20;

    // One client for the process (sockets are pooled); its own timeout is off because downloads
    // are bounded per read by the stall timeout instead: a 170 MB archive may take minutes, a
    // server that stops sending must not hang a worker forever.
    private static readonly Lazy<HttpClient> SharedClient = new(() =>
        new HttpClient(new SocketsHttpHandler { ConnectTimeout = TimeSpan.FromSeconds(30) }) { Timeout = Timeout.InfiniteTimeSpan });

    private readonly HttpClient _http;
    private readonly TimeSpan _stallTimeout;

    /// <param name="cacheRoot">Folder that holds one cached folder per data set; default <see cref="DefaultCacheRoot()"/>.</param>
    /// <param name="systemRoot">Folder of system-installed data sets; default <see cref="DefaultSystemRoot"/>. Null skips it.</param>
    /// <param name="mirror">Base URL that replaces the official URLs' prefix; default <c>$ORCH_DATASET_MIRROR</c>.</param>
    /// <param name="httpClient">Client for downloads; default a process-wide one.</param>
    /// <param name="stallTimeout">A download fails when no byte arrives for this long; default 60 s.</param>
    public DatasetResolver(
        string? cacheRoot = null, string? systemRoot = DefaultSystemRoot, string? mirror = null,
        HttpClient? httpClient = null, TimeSpan? stallTimeout = null)
    {
        CacheRoot = cacheRoot ?? DefaultCacheRoot();
        SystemRoot = systemRoot;
        Mirror = mirror ?? NullIfEmpty(Environment.GetEnvironmentVariable(MirrorVariable));
        _http = httpClient ?? SharedClient.Value;
        _stallTimeout = stallTimeout ?? TimeSpan.FromSeconds(60);
    }

    /// <summary>The folder that holds one cached folder per data set.</summary>
    public string CacheRoot { get; }

    /// <summary>The folder of system-installed data sets, or null when it is not searched.</summary>
    public string? SystemRoot { get; }

    /// <summary>The base URL downloads come from instead of the official hosts, or null.</summary>
    public string? Mirror { get; }

    /// <summary><c>$ORCH_DATA_DIR</c> if set, else <c>$XDG_CACHE_HOME/orchestrator/datasets</c>, else <c>~/.cache/orchestrator/datasets</c>.</summary>
    public static string DefaultCacheRoot() =>
        DefaultCacheRoot(Environment.GetEnvironmentVariable, Environment.GetFolderPath(Environment.SpecialFolder.UserProfile));

    /// <summary>The rule of <see cref="DefaultCacheRoot()"/> over a given environment (tests must not change the process's).</summary>
    internal static string DefaultCacheRoot(Func<string, string?> environment, string home)
    {
        if (NullIfEmpty(environment(DataDirVariable)) is { } dir) return dir;
        var xdg = NullIfEmpty(environment("XDG_CACHE_HOME")) ?? Path.Combine(home, ".cache");
        return Path.Combine(xdg, "orchestrator", "datasets");
    }

    /// <summary>The cache folder of data set <paramref name="name"/>.</summary>
    public string CacheDir(string name) => Path.Combine(CacheRoot, name);

    /// <summary>The URL <paramref name="file"/> is downloaded from: the official one, or the mirror's when set; null when there is none.</summary>
    public Uri? DownloadUri(DatasetFile file)
    {
        ArgumentNullException.ThrowIfNull(file);
        if (Mirror is null) return file.Url is null ? null : new Uri(file.Url);
        var fileName = file.Url is null ? file.Name : new Uri(file.Url).Segments[^1];
        return new Uri(Mirror.TrimEnd('/') + "/" + fileName);
    }

    /// <summary>
    /// Finds every file of <paramref name="info"/>, downloading into the cache when
    /// <paramref name="download"/> allows and nothing local has them.
    /// </summary>
    /// <exception cref="DatasetNotFoundException">No place had the files; the message lists each place and how to get the data.</exception>
    public async Task<DatasetLocation> ResolveAsync(
        DatasetInfo info, string? explicitDir, bool download, IProgress<DownloadProgress>? progress, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(info);
        var looked = new List<string>();

        if (!string.IsNullOrEmpty(explicitDir))
        {
            // Either the folder of the files itself, or a folder of data sets that holds <name>/.
            foreach (var dir in new[] { explicitDir, Path.Combine(explicitDir, info.Name) })
            {
                if (TryLocate(info, dir, "--data-dir", out var found, out var why)) return found;
                looked.Add($"--data-dir {dir}: {why}");
            }
        }

        var cacheDir = CacheDir(info.Name);
        if (TryLocate(info, cacheDir, "cache", out var cached, out var cacheWhy)) return cached;
        looked.Add($"cache {cacheDir}: {cacheWhy}");

        if (SystemRoot is not null)
        {
            var systemDir = Path.Combine(SystemRoot, info.Name);
            if (TryLocate(info, systemDir, "system", out var system, out var systemWhy)) return system;
            looked.Add($"system {systemDir}: {systemWhy}");
        }

        if (!download)
        {
            looked.Add("download: turned off (data.download: false)");
        }
        else if (info.Files.Any(f => DownloadUri(f) is null))
        {
            looked.Add($"download: no URL is known for it (set {MirrorVariable} to a server that has the files)");
        }
        else
        {
            try
            {
                foreach (var file in info.Files)
                {
                    if (!Exists(cacheDir, file))
                        await DownloadAsync(file, DownloadUri(file)!, cacheDir, progress, ct).ConfigureAwait(false);
                }
                if (TryLocate(info, cacheDir, "download", out var downloaded, out var afterWhy)) return downloaded;
                looked.Add($"download into {cacheDir}: finished but {afterWhy}");
            }
            catch (DownloadFailedException ex)
            {
                looked.Add($"download into {cacheDir}: {ex.Message}");
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // E.g. a read-only home folder: the cache cannot be created.
                looked.Add($"download into {cacheDir}: {ex.Message}");
            }
        }

        throw new DatasetNotFoundException(NotFoundMessage(info, looked));
    }

    private static bool TryLocate(DatasetInfo info, string dir, string source, out DatasetLocation location, out string why)
    {
        location = null!;
        if (!Directory.Exists(dir))
        {
            why = "folder does not exist";
            return false;
        }
        var paths = new Dictionary<string, string>(StringComparer.Ordinal);
        var missing = new List<string>();
        foreach (var file in info.Files)
        {
            if (Find(dir, file) is { } path) paths[file.Name] = path;
            else missing.Add(file.Name);
        }
        if (missing.Count > 0)
        {
            why = "missing " + string.Join(", ", missing);
            return false;
        }
        why = "";
        location = new DatasetLocation(dir, source, paths);
        return true;
    }

    private static bool Exists(string dir, DatasetFile file) => Directory.Exists(dir) && Find(dir, file) is not null;

    /// <summary>The path of <paramref name="file"/> in <paramref name="dir"/>, accepting the usual variants people keep on disk.</summary>
    private static string? Find(string dir, DatasetFile file)
    {
        var path = Path.Combine(dir, file.Name);
        if (file.IsArchive)
        {
            if (Directory.Exists(path)) return path;
            // Pointed straight at the unpacked folder (e.g. --data-dir .../cifar-10-batches-bin).
            return string.Equals(Path.GetFileName(Path.TrimEndingDirectorySeparator(dir)), file.Name, StringComparison.Ordinal) ? dir : null;
        }
        if (File.Exists(path)) return path;
        // A gunzipped copy works as well: the IDX reader detects compression from the content.
        if (file.Name.EndsWith(".gz", StringComparison.Ordinal) && File.Exists(path[..^3])) return path[..^3];
        return null;
    }

    private static string NotFoundMessage(DatasetInfo info, List<string> looked)
    {
        var sb = new StringBuilder();
        sb.Append("Data set '").Append(info.Name).Append("' was not found. Looked in:");
        for (var i = 0; i < looked.Count; i++)
            sb.Append("\n  ").Append(i + 1).Append(". ").Append(looked[i]);
        sb.Append("\nTo get it: ");
        if (info.Name == "fashion-mnist")
            sb.Append("apt-get install dataset-fashion-mnist (installs /usr/share/datasets/fashion-mnist); or ");
        var urls = info.Files.Where(f => f.Url is not null).Select(f => f.Url).ToArray();
        sb.Append("put ").Append(string.Join(", ", info.Files.Select(f => f.Name))).Append(" in a folder and pass --data-dir DIR (data.dir in a trial file)");
        if (urls.Length > 0) sb.Append(" (from ").Append(string.Join(", ", urls)).Append(')');
        sb.Append("; or set ").Append(MirrorVariable).Append(" to a server that has the files");
        return sb.ToString();
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
            // Nothing more can be done; the name is hidden and unique, so it cannot be mistaken for data.
        }
    }

    private static string? NullIfEmpty(string? s) => string.IsNullOrEmpty(s) ? null : s;

    /// <summary>A download failed for a reason that belongs in the not-found message.</summary>
    private sealed class DownloadFailedException(string message, Exception? inner = null) : Exception(message, inner);
}

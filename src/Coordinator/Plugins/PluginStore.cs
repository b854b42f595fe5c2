using Microsoft.Extensions.Options;
using Orchestrator.Checkpoints;
using Orchestrator.Coordinator.Checkpoints;
using Orchestrator.Plugins;

namespace Orchestrator.Coordinator.Plugins;

/// <summary>
/// The files of shipped plug-ins, content-addressed: &lt;checkpoint root&gt;/plugins/&lt;sha256&gt;, on the
/// volume that keeps checkpoints (so every coordinator replica and restart sees them). A file is
/// written under a temporary name and renamed into place only once its SHA-256 matches its name.
/// The coordinator only stores and serves these bytes; it never loads them.
/// </summary>
public sealed class PluginStore(IOptions<CheckpointStoreOptions> options)
{
    private readonly string _root = Path.Combine(Path.GetFullPath(options.Value.Root), "plugins");

    /// <summary>The stored file with hash <paramref name="sha256"/>, or null when there is none.</summary>
    public string? Find(string sha256)
    {
        var path = PathOf(sha256);
        return File.Exists(path) ? path : null;
    }

    /// <summary>A receiver that stores a file of <paramref name="size"/> bytes once it hashes to <paramref name="sha256"/>.</summary>
    /// <exception cref="ArgumentException">The hash is not a lowercase hex SHA-256, or the size is out of range.</exception>
    public ChunkedFileReceiver Receive(string sha256, long size)
    {
        if (size is < 0 or > PluginBundle.MaxFileBytes)
            throw new ArgumentOutOfRangeException(nameof(size), size, $"a plug-in file is at most {PluginBundle.MaxFileBytes} bytes");
        return new ChunkedFileReceiver(PathOf(sha256), size, $"plug-in file {sha256}");
    }

    private string PathOf(string sha256) =>
        PluginBundle.IsSha256(sha256) ? Path.Combine(_root, sha256) : throw new ArgumentException($"'{sha256}' is not a lowercase hex SHA-256", nameof(sha256));
}

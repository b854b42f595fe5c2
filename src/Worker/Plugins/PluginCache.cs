using Grpc.Core;
using Orchestrator.Checkpoints;
using Orchestrator.Plugins;
using Orchestrator.Protocol.V1;

namespace Orchestrator.Worker.Plugins;

/// <summary>
/// The worker's copies of shipped plug-ins (<see cref="PluginBundle"/>): a bundle is downloaded from
/// the coordinator once, each file verified against its SHA-256 (the manifest's own hash being the
/// reference), into &lt;work dir&gt;/plugins/&lt;manifest sha256&gt;/, and reused by later trials. A bundle
/// folder is complete or absent: files land in a staging folder that is renamed into place.
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "A SemaphoreSlim whose wait handle is never asked for holds nothing to release; the cache lives as long as its worker.")]
internal sealed class PluginCache(Protocol.V1.Plugins.PluginsClient client, string root, Metadata headers)
{
    /// <summary>The longest one file's download may take.</summary>
    public static readonly TimeSpan FileDeadline = TimeSpan.FromMinutes(5);

    private const string CompleteMarker = ".complete";
    private readonly SemaphoreSlim _lock = new(1, 1);

    /// <summary>The local path of the assembly <paramref name="reference"/> (<c>bundle:…/X.dll</c>) names, downloaded if need be.</summary>
    /// <exception cref="PluginException">The bundle is not on the coordinator, or a file arrived damaged.</exception>
    public async Task<string> FetchAsync(string reference, CancellationToken ct)
    {
        if (!PluginBundle.TryParse(reference, out var manifestSha, out var assembly))
            throw new PluginException(reference, "is not a shipped plug-in reference (bundle:<sha256>/<assembly>.dll)");
        var folder = Path.Combine(root, manifestSha);
        var main = Path.Combine(folder, assembly);
        if (File.Exists(Path.Combine(folder, CompleteMarker))) return main;
        await _lock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            if (File.Exists(Path.Combine(folder, CompleteMarker))) return main;
            var staging = $"{folder}.{Guid.NewGuid():N}.partial";
            try
            {
                var manifestPath = Path.Combine(staging, ".manifest");
                await DownloadAsync(reference, manifestSha, manifestPath, null, ct).ConfigureAwait(false);
                IReadOnlyList<BundleFile> files;
                try
                {
                    files = PluginBundle.ReadManifest(await File.ReadAllTextAsync(manifestPath, ct).ConfigureAwait(false));
                }
                catch (InvalidDataException e)
                {
                    throw new PluginException(reference, e.Message, e);
                }
                if (!files.Any(f => f.Name == assembly)) throw new PluginException(reference, $"the shipped bundle has no file {assembly}");
                foreach (var file in files)
                    await DownloadAsync(reference, file.Sha256, Path.Combine(staging, file.Name), file.Size, ct).ConfigureAwait(false);
                await File.WriteAllTextAsync(Path.Combine(staging, CompleteMarker), reference, ct).ConfigureAwait(false);
                if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
                Directory.Move(staging, folder);
                return main;
            }
            finally
            {
                if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
            }
        }
        finally
        {
            _lock.Release();
        }
    }

    private async Task DownloadAsync(string reference, string sha256, string target, long? size, CancellationToken ct)
    {
        try
        {
            using var call = client.DownloadPluginFile(new DownloadPluginFileRequest { Sha256 = sha256 },
                new CallOptions(headers, DateTime.UtcNow + FileDeadline, ct));
            var receiver = new ChunkedFileReceiver(target, size, $"plug-in file {sha256}");
            await using (receiver.ConfigureAwait(false))
            {
                await foreach (var chunk in call.ResponseStream.ReadAllAsync(ct).ConfigureAwait(false))
                    await receiver.WriteAsync(chunk.Data.Memory, ct).ConfigureAwait(false);
                await receiver.CommitAsync(sha256, ct).ConfigureAwait(false);
            }
        }
        catch (RpcException e) when (e.StatusCode is StatusCode.NotFound or StatusCode.InvalidArgument or StatusCode.PermissionDenied or StatusCode.Unauthenticated)
        {
            throw new PluginException(reference, $"cannot be fetched from the coordinator: {e.Status.Detail}", e);
        }
        catch (ChunkedTransferException e)
        {
            throw new PluginException(reference, e.Message, e);
        }
    }
}

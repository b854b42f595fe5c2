using System.Diagnostics.CodeAnalysis;
using Google.Protobuf;
using Grpc.Core;
using Orchestrator.Data;
using Orchestrator.Protocol.V1;

namespace Orchestrator.Coordinator.Data;

/// <summary>
/// The DataSets gRPC service: manifests and resumable file downloads for workers without a
/// shared data folder. Thin: validates the request, asks <see cref="DatasetServer"/>, streams.
/// </summary>
public sealed class DataSetsService(DatasetServer server) : DataSets.DataSetsBase
{
    /// <summary>Bytes per chunk: within the 256 KB–1 MB range that streams well over gRPC on loopback, well under the message limit.</summary>
    public const int ChunkSize = 512 * 1024;

    public override async Task<DatasetManifest> GetManifest(GetManifestRequest request, ServerCallContext context)
    {
        var served = await ResolveAsync(request.Name, request.Dir, request.ImageSize, request.AllowDownload, context.CancellationToken).ConfigureAwait(false);
        var manifest = new DatasetManifest { Name = served.Name, Id = served.Id, Format = served.Format };
        foreach (var f in served.Files)
            manifest.Files.Add(new ManifestFile { Path = f.Path, Size = f.Size, Sha256 = f.Sha256 });
        return manifest;
    }

    public override async Task Download(DownloadRequest request, IServerStreamWriter<DataChunk> responseStream, ServerCallContext context)
    {
        var ct = context.CancellationToken;
        // Checked before anything touches the disk: a traversal attempt gets no further than here.
        if (DataPaths.Problem(request.Path) is { } problem) Invalid("path: " + problem);
        // Never downloads: a worker asks for files only after a manifest, which resolved the data set.
        var served = await ResolveAsync(request.Name, request.Dir, request.ImageSize, allowDownload: false, ct).ConfigureAwait(false);
        var file = served.Find(request.Path)
                   ?? throw new RpcException(new Status(StatusCode.NotFound, $"'{request.Path}' is not a file of data set '{served.Name}'"));
        if (request.Offset < 0 || request.Offset > file.Size)
            throw new RpcException(new Status(StatusCode.OutOfRange, $"offset {request.Offset} is outside '{file.Path}' ({file.Size} bytes)"));

        var stream = new FileStream(file.FullPath, FileMode.Open, FileAccess.Read, FileShare.Read, 1, useAsync: true);
        await using (stream.ConfigureAwait(false))
        {
            if (stream.Length != file.Size)
                throw new RpcException(new Status(StatusCode.Aborted, $"'{file.Path}' changed on the coordinator while being served; ask for the manifest again"));
            stream.Position = request.Offset;
            var buffer = new byte[ChunkSize];
            var offset = request.Offset;
            do
            {
                var n = await stream.ReadAtLeastAsync(buffer, buffer.Length, throwOnEndOfStream: false, ct).ConfigureAwait(false);
                // UnsafeWrap avoids a copy; reusing the buffer is safe because WriteAsync has
                // serialised the message by the time it completes.
                var chunk = new DataChunk { Offset = offset, Data = UnsafeByteOperations.UnsafeWrap(buffer.AsMemory(0, n)), TotalSize = file.Size };
                await responseStream.WriteAsync(chunk, ct).ConfigureAwait(false);
                offset += n;
                if (n == 0) break;
            }
            while (offset < file.Size);
        }
    }

    private async Task<ServedDataset> ResolveAsync(string name, string dir, int imageSize, bool allowDownload, CancellationToken ct)
    {
        if (string.IsNullOrEmpty(name)) Invalid("name is required");
        if (imageSize < 0) Invalid($"image_size {imageSize} is negative");
        try
        {
            return await server.GetAsync(name, dir, imageSize, allowDownload, ct).ConfigureAwait(false);
        }
        catch (DataRequestException e)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, e.Message));
        }
        catch (DatasetNotFoundException e)
        {
            throw new RpcException(new Status(StatusCode.NotFound, "on the coordinator: " + e.Message));
        }
        catch (DataFormatException e)
        {
            throw new RpcException(new Status(StatusCode.FailedPrecondition, "on the coordinator: " + e.Message));
        }
    }

    [DoesNotReturn]
    private static void Invalid(string message) => throw Grpc.Errors.Invalid(message);
}

/// <summary>Wiring of data delivery into the coordinator host.</summary>
public static class DataDeliveryExtensions
{
    /// <summary>Registers <see cref="DatasetServer"/>; configure <see cref="DatasetServerOptions"/> for where it finds data sets.</summary>
    public static IServiceCollection AddDataDelivery(this IServiceCollection services, Action<DatasetServerOptions, IServiceProvider> configure)
    {
        services.AddOptions<DatasetServerOptions>().Configure<IServiceProvider>(configure);
        services.AddSingleton<DatasetServer>();
        return services;
    }
}

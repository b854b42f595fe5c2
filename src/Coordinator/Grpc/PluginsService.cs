using Google.Protobuf;
using Grpc.Core;
using Orchestrator.Checkpoints;
using Orchestrator.Coordinator.Plugins;
using Orchestrator.Plugins;
using Orchestrator.Protocol.V1;

namespace Orchestrator.Coordinator.Grpc;

/// <summary>
/// The Plugins gRPC service: users upload the files of their plug-ins, workers download them, both
/// by SHA-256 (<see cref="PluginStore"/>). Who may call which is in Security/AccessRules.
/// </summary>
public sealed class PluginsService(PluginStore store) : Protocol.V1.Plugins.PluginsBase
{
    /// <summary>Bytes per chunk of a download.</summary>
    public const int ChunkSize = ChunkedFile.DefaultChunkSize;

    public override async Task<PluginFileStored> UploadPluginFile(IAsyncStreamReader<PluginFileChunk> requestStream, ServerCallContext context)
    {
        var ct = context.CancellationToken;
        if (!await requestStream.MoveNext(ct).ConfigureAwait(false)) throw Errors.Invalid("an upload needs at least one chunk");
        var first = requestStream.Current;
        if (!PluginBundle.IsSha256(first.Sha256)) throw Errors.Invalid($"sha256: '{first.Sha256}' is not a lowercase hex SHA-256");
        if (first.TotalSize is < 0 or > PluginBundle.MaxFileBytes)
            throw new RpcException(new Status(StatusCode.ResourceExhausted, $"a plug-in file is at most {PluginBundle.MaxFileBytes} bytes (got {first.TotalSize})"));
        var existed = store.Find(first.Sha256) is not null;
        if (existed)
        {
            // Content-addressed: the same hash is the same file. Drain what the client still sends.
            while (await requestStream.MoveNext(ct).ConfigureAwait(false)) { }
            return new PluginFileStored { Sha256 = first.Sha256, Existed = true };
        }
        var receiver = store.Receive(first.Sha256, first.TotalSize);
        await using (receiver.ConfigureAwait(false))
        {
            try
            {
                await receiver.WriteAsync(first.Data.Memory, ct).ConfigureAwait(false);
                while (await requestStream.MoveNext(ct).ConfigureAwait(false))
                    await receiver.WriteAsync(requestStream.Current.Data.Memory, ct).ConfigureAwait(false);
                await receiver.CommitAsync(first.Sha256, ct).ConfigureAwait(false);
            }
            catch (ChunkedTransferException e)
            {
                throw new RpcException(new Status(StatusCode.DataLoss, e.Message));
            }
        }
        return new PluginFileStored { Sha256 = first.Sha256, Existed = false };
    }

    public override async Task DownloadPluginFile(DownloadPluginFileRequest request, IServerStreamWriter<PluginFileChunk> responseStream, ServerCallContext context)
    {
        if (!PluginBundle.IsSha256(request.Sha256)) throw Errors.Invalid($"sha256: '{request.Sha256}' is not a lowercase hex SHA-256");
        var path = store.Find(request.Sha256) ?? throw Errors.NotFound($"no plug-in file {request.Sha256} was uploaded (submit the sweep with orch submit)");
        var size = new FileInfo(path).Length;
        await foreach (var chunk in ChunkedFile.ReadFileAsync(path, ChunkSize, context.CancellationToken).ConfigureAwait(false))
        {
            // UnsafeWrap avoids a copy: WriteAsync has serialised the message before the buffer is reused.
            await responseStream.WriteAsync(new PluginFileChunk { Sha256 = request.Sha256, TotalSize = size, Data = UnsafeByteOperations.UnsafeWrap(chunk.Data) },
                context.CancellationToken).ConfigureAwait(false);
        }
    }
}

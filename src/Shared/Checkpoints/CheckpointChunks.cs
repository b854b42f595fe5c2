using Google.Protobuf;
using Grpc.Core;
using Orchestrator.Protocol.V1;

namespace Orchestrator.Checkpoints;

/// <summary>
/// <see cref="ChunkedFile"/> over the protocol's <see cref="CheckpointChunk"/> stream: the
/// coordinator sends a stored checkpoint with <see cref="SendAsync"/> (to a resuming worker, or to
/// `orch best`), the receiving side stores it with <see cref="ReceiveAsync"/>.
/// </summary>
public static class CheckpointChunks
{
    /// <summary>Streams <paramref name="file"/> to its end; the first chunk names it, the last carries the SHA-256.</summary>
    public static async Task SendAsync(Stream file, string fileName, IAsyncStreamWriter<CheckpointChunk> stream, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(file);
        ArgumentNullException.ThrowIfNull(stream);
        var total = file.CanSeek ? file.Length : 0;
        await foreach (var part in ChunkedFile.ReadAsync(file, ChunkedFile.DefaultChunkSize, ct).ConfigureAwait(false))
        {
            await stream.WriteAsync(new CheckpointChunk
            {
                Data = ByteString.CopyFrom(part.Data.Span),
                Offset = part.Offset,
                TotalSize = total,
                FileName = part.Offset == 0 ? fileName : "",
                Sha256 = part.Sha256 ?? "",
            }, ct).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Receives a checkpoint into <paramref name="target"/>, verified (length announced by the
    /// sender, SHA-256 of the last chunk) and renamed into place; returns <paramref name="target"/>.
    /// </summary>
    /// <exception cref="ChunkedTransferException">The checkpoint arrived short or damaged; nothing was written to <paramref name="target"/>.</exception>
    public static async Task<string> ReceiveAsync(IAsyncStreamReader<CheckpointChunk> stream, string target, string what, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ChunkedFileReceiver? receiver = null;
        try
        {
            string? sha = null;
            while (await stream.MoveNext(ct).ConfigureAwait(false))
            {
                var chunk = stream.Current;
                // The sender announces the size with every chunk; an empty file announces none.
                receiver ??= new ChunkedFileReceiver(target, chunk.TotalSize > 0 ? chunk.TotalSize : null, what);
                await receiver.WriteAsync(chunk.Data.Memory, ct).ConfigureAwait(false);
                if (chunk.Sha256.Length > 0) sha = chunk.Sha256;
            }
            receiver ??= new ChunkedFileReceiver(target, null, what);
            await receiver.CommitAsync(sha, ct).ConfigureAwait(false);
            return receiver.Target;
        }
        finally
        {
            if (receiver is not null) await receiver.DisposeAsync().ConfigureAwait(false);
        }
    }
}

using Google.Protobuf;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Orchestrator.Checkpoints;
using Orchestrator.Protocol.V1;

namespace Orchestrator.Worker.Host;

/// <summary>
/// The worker's side of checkpoint transfer: uploads (header, chunks, SHA-256 trailer; retried
/// until stored, since the next epoch starts only once the checkpoint is safe) and the download
/// a resuming trial starts from. The chunking and hashing are <see cref="ChunkedFile"/>'s.
/// </summary>
internal sealed class CheckpointClient(WorkerGateway.WorkerGatewayClient client, Metadata headers, WorkerAgentOptions options, ILogger logger)
{
    /// <summary>
    /// Uploads <paramref name="path"/> under <paramref name="header"/> (its size filled in here).
    /// Throws the coordinator's <see cref="StatusCode.FailedPrecondition"/> when it refuses the
    /// checkpoint (the trial is no longer this worker's); other failures are retried.
    /// </summary>
    public async Task UploadAsync(CheckpointHeader header, string path, CancellationToken ct)
    {
        var retry = WorkerResilience.CheckpointUpload(options, logger, () => header.Lease.TrialId);
        await retry.ExecuteAsync(async token =>
        {
            header.Size = new FileInfo(path).Length;
            // A deadline per attempt: a transfer that stalls (a connection that died under a write
            // waiting for flow control) fails and is retried instead of holding the trial forever.
            using var call = client.UploadCheckpoint(headers, DateTime.UtcNow + WorkerResilience.CheckpointTransferDeadline(header.Size), token);
            try
            {
                await call.RequestStream.WriteAsync(new CheckpointUpload { Header = header }, token).ConfigureAwait(false);
                string? sha = null;
                await foreach (var chunk in ChunkedFile.ReadFileAsync(path, ChunkedFile.DefaultChunkSize, token).ConfigureAwait(false))
                {
                    if (!chunk.Data.IsEmpty)
                        await call.RequestStream.WriteAsync(new CheckpointUpload { Data = ByteString.CopyFrom(chunk.Data.Span) }, token).ConfigureAwait(false);
                    sha = chunk.Sha256;
                }
                await call.RequestStream.WriteAsync(new CheckpointUpload { Trailer = new CheckpointTrailer { Sha256 = sha } }, token).ConfigureAwait(false);
                await call.RequestStream.CompleteAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is RpcException or InvalidOperationException && !token.IsCancellationRequested)
            {
                // The coordinator answered (a stale token, a full store) while chunks were still going
                // out, and the write failed with whatever the transport saw: its answer says why.
            }
            await call.ResponseAsync.ConfigureAwait(false);
        }, ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Downloads the stored checkpoint of the trial <paramref name="lease"/> holds to
    /// <paramref name="path"/>, verified; retried while the coordinator cannot answer (a restart).
    /// </summary>
    public async Task DownloadAsync(TrialLease lease, string path, CancellationToken ct)
    {
        var retry = WorkerResilience.CheckpointDownload(options, logger, () => lease.TrialId);
        await retry.ExecuteAsync(async token =>
        {
            // The size is not known before the first chunk: the deadline allows for a large checkpoint.
            using var call = client.DownloadTrialCheckpoint(new DownloadTrialCheckpointRequest { Lease = lease }, headers,
                DateTime.UtcNow + WorkerResilience.CheckpointTransferDeadline(WorkerResilience.LargeCheckpointBytes), token);
            await CheckpointChunks.ReceiveAsync(call.ResponseStream, path, $"the checkpoint of {lease.TrialId}", token).ConfigureAwait(false);
        }, ct).ConfigureAwait(false);
    }
}

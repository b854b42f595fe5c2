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
internal sealed partial class CheckpointClient(WorkerGateway.WorkerGatewayClient client, Metadata headers, ILogger logger)
{
    /// <summary>
    /// Uploads <paramref name="path"/> under <paramref name="header"/> (its size filled in here).
    /// Throws the coordinator's <see cref="StatusCode.FailedPrecondition"/> when it refuses the
    /// checkpoint (the trial is no longer this worker's); other failures are retried.
    /// </summary>
    public async Task UploadAsync(CheckpointHeader header, string path, CancellationToken ct)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                using var call = client.UploadCheckpoint(headers, cancellationToken: ct);
                header.Size = new FileInfo(path).Length;
                await call.RequestStream.WriteAsync(new CheckpointUpload { Header = header }, ct).ConfigureAwait(false);
                string? sha = null;
                await foreach (var chunk in ChunkedFile.ReadFileAsync(path, ChunkedFile.DefaultChunkSize, ct).ConfigureAwait(false))
                {
                    if (!chunk.Data.IsEmpty)
                        await call.RequestStream.WriteAsync(new CheckpointUpload { Data = ByteString.CopyFrom(chunk.Data.Span) }, ct).ConfigureAwait(false);
                    sha = chunk.Sha256;
                }
                await call.RequestStream.WriteAsync(new CheckpointUpload { Trailer = new CheckpointTrailer { Sha256 = sha } }, ct).ConfigureAwait(false);
                await call.RequestStream.CompleteAsync().ConfigureAwait(false);
                await call.ResponseAsync.ConfigureAwait(false);
                return;
            }
            catch (Exception e) when (e is RpcException { StatusCode: not StatusCode.FailedPrecondition } or IOException && !ct.IsCancellationRequested)
            {
                // IOException: the connection dropped under a write of the request stream (a coordinator
                // killed mid-upload); the restarted one takes the whole checkpoint again.
                Log.UploadRetry(logger, header.Lease.TrialId, attempt, e is RpcException r ? r.Status.Detail : e.Message);
                await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(5000, 200 * attempt)), ct).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Downloads the stored checkpoint of the trial <paramref name="lease"/> holds to <paramref name="path"/>, verified.</summary>
    public async Task DownloadAsync(TrialLease lease, string path, CancellationToken ct)
    {
        using var call = client.DownloadTrialCheckpoint(new DownloadTrialCheckpointRequest { Lease = lease }, headers, cancellationToken: ct);
        await CheckpointChunks.ReceiveAsync(call.ResponseStream, path, $"the checkpoint of {lease.TrialId}", ct).ConfigureAwait(false);
    }

    private static partial class Log
    {
        [LoggerMessage(112, LogLevel.Warning, "Trial {TrialId}: checkpoint upload attempt {Attempt} failed ({Reason}); retrying")]
        public static partial void UploadRetry(ILogger logger, string trialId, int attempt, string reason);
    }
}

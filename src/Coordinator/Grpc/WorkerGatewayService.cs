using Grpc.Core;
using Microsoft.Extensions.Options;
using Orchestrator.Checkpoints;
using Orchestrator.Coordinator.Checkpoints;
using Orchestrator.Coordinator.Aggregation;
using Orchestrator.Coordinator.Configuration;
using Orchestrator.Coordinator.State;
using Orchestrator.Coordinator.Sweeps;
using Orchestrator.Coordinator.Workers;
using Orchestrator.Protocol.V1;

namespace Orchestrator.Coordinator.Grpc;

/// <summary>
/// The worker side of the coordinator. Each worker holds one Connect stream: this method reads
/// it (heartbeats, metrics, outcomes) while a single writer loop drains the worker's outbox.
/// While the state store does not answer, the message in hand is retried in place
/// (<see cref="StoreResilience.WorkerMessages"/>): the stream stays open, the worker keeps
/// training, and its later messages wait in order behind it.
/// </summary>
public sealed partial class WorkerGatewayService(
    WorkerRegistry registry,
    SweepManager sweeps,
    CheckpointStore checkpoints,
    IStateStore store,
    IOptions<CoordinatorOptions> options,
    TimeProvider clock,
    Metrics.CoordinatorMetrics metrics,
    Metrics.MetricsSnapshotService snapshots,
    GradientSocketEndpoint gradientSocket,
    Logs.TrialLogs logs,
    StoreResilience resilience,
    ILogger<WorkerGatewayService> logger) : WorkerGateway.WorkerGatewayBase
{
    public override async Task Connect(IAsyncStreamReader<WorkerMessage> requestStream, IServerStreamWriter<CoordinatorMessage> responseStream, ServerCallContext context)
    {
        var ct = context.CancellationToken;
        if (!await requestStream.MoveNext(ct).ConfigureAwait(false) || requestStream.Current.KindCase != WorkerMessage.KindOneofCase.Hello)
            throw new RpcException(new Status(StatusCode.InvalidArgument, "the first message on a worker stream must be Hello"));
        var hello = requestStream.Current.Hello;
        if (string.IsNullOrWhiteSpace(hello.WorkerId) || hello.WorkerId.Length > 128)
            throw new RpcException(new Status(StatusCode.InvalidArgument, "Hello.worker_id must be 1 to 128 characters"));

        var connection = new WorkerConnection(hello.WorkerId, string.IsNullOrEmpty(hello.Name) ? hello.WorkerId : hello.Name,
            Mapping.FromProto(hello.Capabilities), clock.GetUtcNow(), hello.DataEndpoint, hello.DeviceDataEndpoints)
        {
            Draining = hello.Draining,
        };
        var welcome = new Welcome { HeartbeatIntervalMs = (int)options.Value.HeartbeatInterval.TotalMilliseconds };
        // Re-attach: a worker that kept training while it was cut off keeps its trials if nobody took them meanwhile.
        // A worker running several ranks of one trial lists it once per rank.
        foreach (var ranks in hello.Running.GroupBy(l => (l.TrialId, l.FencingToken)))
        {
            var renewed = false;
            await StoreResilience.ExecuteAsync(resilience.WorkerMessages,
                async token => renewed = await sweeps.RenewLeaseAsync(connection.Id, ranks.Key.TrialId, ranks.Key.FencingToken, token).ConfigureAwait(false), ct).ConfigureAwait(false);
            if (renewed)
            {
                foreach (var lease in ranks) connection.Attach(lease.TrialId, lease.FencingToken, lease.Rank, lease.Gpus);
            }
            else
            {
                // A lease renewal too, refused: the trial moved on while this worker was away.
                StaleWrite("heartbeat", ranks.Key.TrialId, ranks.Key.FencingToken, connection.Id);
                welcome.StopTrialIds.Add(ranks.Key.TrialId);
            }
        }
        // Welcome goes out before the connection is registered: nothing can be assigned ahead of it.
        await responseStream.WriteAsync(new CoordinatorMessage { Welcome = welcome }, ct).ConfigureAwait(false);
        registry.Add(connection);
        await StoreResilience.ExecuteAsync(resilience.WorkerMessages, token => UpsertAsync(connection, "busy", token), ct).ConfigureAwait(false);
        Log.WorkerConnected(logger, connection.Id, connection.Name, hello.Running.Count);

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var writer = WriteLoopAsync(connection, responseStream, stop.Token);
        try
        {
            await foreach (var message in requestStream.ReadAllAsync(ct).ConfigureAwait(false))
            {
                // Safe to repeat: reports are idempotent by step, outcomes and renewals by fencing token.
                await StoreResilience.ExecuteAsync(resilience.WorkerMessages, token => HandleAsync(connection, message, token), ct).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // The worker went away; its leases expire unless it reconnects in time.
        }
        catch (IOException)
        {
        }
        finally
        {
            registry.Remove(connection);
            await stop.CancelAsync().ConfigureAwait(false);
            try { await writer.ConfigureAwait(false); } catch (OperationCanceledException) { }
            Log.WorkerDisconnected(logger, connection.Id);
            try { await UpsertAsync(connection, "lost", CancellationToken.None).ConfigureAwait(false); }
            catch (StateStoreUnavailableException) { }
        }
    }

    /// <summary>The stream's one writer: the domain's commands for this worker, mapped to messages in order.</summary>
    private async Task WriteLoopAsync(WorkerConnection connection, IServerStreamWriter<CoordinatorMessage> stream, CancellationToken ct)
    {
        try
        {
            await foreach (var command in connection.Outbox.ReadAllAsync(ct).ConfigureAwait(false))
                await stream.WriteAsync(Mapping.ToProto(command, gradientSocket.Advertised, gradientSocket.UnixPath), ct).ConfigureAwait(false);
        }
        catch (OperationCanceledException) { }
        catch (InvalidOperationException) { } // the call ended while writing
    }

    private async Task HandleAsync(WorkerConnection connection, WorkerMessage message, CancellationToken ct)
    {
        switch (message.KindCase)
        {
            case WorkerMessage.KindOneofCase.Heartbeat:
                // Only heartbeats count as signs of life: they are what renews leases, so a worker
                // whose leases expired is also one the scheduler sees as silent (a report sent after
                // its last heartbeat must not make a hung worker eligible for the re-queued trial).
                connection.LastHeartbeat = clock.GetUtcNow();
                if (message.Heartbeat.Draining && !connection.Draining)
                {
                    // From now on the scheduler passes it over; its trials come back as OUTCOME_DRAINED.
                    connection.Draining = true;
                    Log.WorkerDraining(logger, connection.Id, connection.Trials.Count);
                    await UpsertAsync(connection, "busy", ct).ConfigureAwait(false);
                }
                foreach (var lease in message.Heartbeat.Running.DistinctBy(l => (l.TrialId, l.FencingToken)))
                {
                    if (!await sweeps.RenewLeaseAsync(connection.Id, lease.TrialId, lease.FencingToken, ct).ConfigureAwait(false))
                    {
                        StaleWrite("heartbeat", lease.TrialId, lease.FencingToken, connection.Id);
                        connection.Detach(lease.TrialId);
                        // A trial stopped early under this very lease still uploads the checkpoint of the
                        // epoch it was judged on: the heartbeat must not cut that upload short.
                        var stoppedEarly = await sweeps.AcceptsCheckpointAsync(lease.TrialId, lease.FencingToken, 0, ct).ConfigureAwait(false)
                            is { State: Domain.TrialStatus.Stopped };
                        connection.Send(new StopOrder(lease.TrialId, stoppedEarly ? "stopped early" : "the lease is no longer yours") { AfterCheckpoint = stoppedEarly });
                    }
                }
                break;
            case WorkerMessage.KindOneofCase.Metric:
                var m = message.Metric;
                if (m.Lease is null || m.Point is null) break;
                var point = Mapping.FromProto(m.Point, clock.GetUtcNow());
                metrics.MetricReported(point.Values);
                if (!await sweeps.ReportMetricAsync(m.Lease.TrialId, m.Lease.FencingToken, point, ct).ConfigureAwait(false))
                {
                    StaleWrite("metric", m.Lease.TrialId, m.Lease.FencingToken, connection.Id);
                    connection.Send(new StopOrder(m.Lease.TrialId, "stale fencing token"));
                }
                else
                    snapshots.TrialReported(m.Lease.TrialId, point.Values);
                break;
            case WorkerMessage.KindOneofCase.Log:
                // Lines under a stale lease are dropped; the metric reports of that worker get it stopped.
                if (message.Log.Lease is not { } logLease) break;
                var now = clock.GetUtcNow();
                await logs.AppendAsync(logLease.TrialId, logLease.FencingToken, message.Log.Lines.Select(l => Mapping.FromProto(l, now)), ct).ConfigureAwait(false);
                break;
            case WorkerMessage.KindOneofCase.Status:
                var s = message.Status;
                if (s.Lease is null || Mapping.FromProto(s.Outcome) is not { } outcome) break;
                if (!await sweeps.TrialOutcomeAsync(connection.Id, s.Lease.TrialId, s.Lease.FencingToken, s.Lease.Rank, outcome, s.Message, ct).ConfigureAwait(false))
                    StaleWrite("outcome", s.Lease.TrialId, s.Lease.FencingToken, connection.Id);
                break;
            case WorkerMessage.KindOneofCase.Hello:
                throw new RpcException(new Status(StatusCode.InvalidArgument, "Hello may be sent only once per stream"));
        }
    }

    private Task UpsertAsync(WorkerConnection w, string state, CancellationToken ct) => store.UpsertWorkerAsync(new Domain.WorkerRecord
    {
        Id = w.Id,
        Name = w.Name,
        Device = w.Resources.Device,
        Gpus = w.Resources.Gpus.Count,
        MemoryBytes = w.Resources.MemoryBytes,
        CpuCores = w.Resources.CpuCores,
        Version = w.Resources.Version,
        Host = w.Resources.Host,
        State = state == "busy" ? (w.Draining ? "draining" : w.IsBusy ? "busy" : "idle") : state,
        TrialId = w.Trials.Keys.FirstOrDefault(),
        ConnectedAt = w.ConnectedAt,
        LastHeartbeat = w.LastHeartbeat,
    }, ct);

    public override async Task<UploadCheckpointResponse> UploadCheckpoint(IAsyncStreamReader<CheckpointUpload> requestStream, ServerCallContext context)
    {
        var ct = context.CancellationToken;
        if (!await requestStream.MoveNext(ct).ConfigureAwait(false) || requestStream.Current.PartCase != CheckpointUpload.PartOneofCase.Header)
            throw new RpcException(new Status(StatusCode.InvalidArgument, "a checkpoint upload starts with its header"));
        var header = requestStream.Current.Header;
        // The store calls of an upload are ridden out in place like a stream's messages (all are safe
        // to repeat): an upload that ended early while the worker still sends chunks would cost it
        // the whole transfer, and its connection with it when frames reach a stream already closed.
        Domain.TrialRecord? trial = null;
        await StoreResilience.ExecuteAsync(resilience.WorkerMessages,
            async token => trial = await sweeps.AcceptsCheckpointAsync(header.Lease.TrialId, header.Lease.FencingToken, header.Epoch, token).ConfigureAwait(false), ct).ConfigureAwait(false);
        if (trial is null)
        {
            StaleWrite("checkpoint", header.Lease.TrialId, header.Lease.FencingToken, context.Peer);
            throw new RpcException(new Status(StatusCode.FailedPrecondition, $"trial {header.Lease.TrialId}: stale fencing token or trial not running"));
        }
        if (header.Size < 0) throw new RpcException(new Status(StatusCode.InvalidArgument, $"a checkpoint upload announces a negative size ({header.Size})"));
        var slot = header.Best ? CheckpointSlot.Best : CheckpointSlot.Latest;
        var started = clock.GetTimestamp();
        try
        {
            await using var upload = checkpoints.BeginUpload(trial.SweepId, trial.Id, slot, header.Size);
            string? sha = null;
            while (sha is null && await requestStream.MoveNext(ct).ConfigureAwait(false))
            {
                var part = requestStream.Current;
                if (part.PartCase == CheckpointUpload.PartOneofCase.Data) await upload.WriteAsync(part.Data.Memory, ct).ConfigureAwait(false);
                else if (part.PartCase == CheckpointUpload.PartOneofCase.Trailer) sha = part.Trailer.Sha256;
            }
            await upload.CommitAsync(sha, ct).ConfigureAwait(false);
        }
        catch (ChunkedTransferException e)
        {
            throw new RpcException(new Status(e.Failure is TransferFailure.TooLong or TransferFailure.MissingHash ? StatusCode.InvalidArgument : StatusCode.DataLoss, e.Message));
        }
        catch (IOException e) when (!ct.IsCancellationRequested)
        {
            // The temporary file is deleted and the stored checkpoint, if any, stays as it was: a
            // resuming trial never gets half a file. The worker retries (space may be freed).
            Log.CheckpointWriteFailed(logger, header.Lease.TrialId, checkpoints.Root, e.Message);
            throw new RpcException(CheckpointStore.IsDiskFull(e)
                ? new Status(StatusCode.ResourceExhausted, $"the coordinator's checkpoint store is full ({e.Message}); the last stored checkpoint of {trial.Id} is kept")
                : new Status(StatusCode.Unavailable, $"the coordinator could not write the checkpoint of {trial.Id}: {e.Message}"));
        }
        // The token may have changed while the bytes travelled; the file is then harmless (the new
        // owner overwrites it), but the epoch is recorded only for the current owner.
        if (slot == CheckpointSlot.Latest)
        {
            // The epoch's metrics first (idempotent by step): once the checkpoint's epoch is recorded,
            // a resumed trial skips that epoch, so its metric point must already be stored.
            if (header.Point is { } point && point.Epoch == header.Epoch)
            {
                var record = Mapping.FromProto(point, clock.GetUtcNow());
                await StoreResilience.ExecuteAsync(resilience.WorkerMessages,
                    token => sweeps.ReportMetricAsync(trial.Id, header.Lease.FencingToken, record, token), ct).ConfigureAwait(false);
            }
            await StoreResilience.ExecuteAsync(resilience.WorkerMessages,
                token => sweeps.CheckpointStoredAsync(trial.Id, header.Lease.FencingToken, header.Epoch, token), ct).ConfigureAwait(false);
        }
        metrics.CheckpointUploaded(header.Size, clock.GetElapsedTime(started));
        return new UploadCheckpointResponse { Size = header.Size };
    }

    public override async Task DownloadTrialCheckpoint(DownloadTrialCheckpointRequest request, IServerStreamWriter<CheckpointChunk> responseStream, ServerCallContext context)
    {
        var trial = await sweeps.CurrentAsync(request.Lease.TrialId, request.Lease.FencingToken, context.CancellationToken).ConfigureAwait(false)
                    ?? throw new RpcException(new Status(StatusCode.FailedPrecondition, $"trial {request.Lease.TrialId}: stale fencing token"));
        if (!checkpoints.Exists(trial.SweepId, trial.Id, CheckpointSlot.Latest))
            throw new RpcException(new Status(StatusCode.NotFound, $"trial {trial.Id} has no stored checkpoint"));
        await using var file = checkpoints.OpenRead(trial.SweepId, trial.Id, CheckpointSlot.Latest);
        await CheckpointChunks.SendAsync(file, $"{trial.Id}.ckpt", responseStream, context.CancellationToken).ConfigureAwait(false);
    }

    /// <summary>A write fencing refused: logged and counted, so a worker acting on a lost lease shows.</summary>
    private void StaleWrite(string write, string trialId, long token, string from)
    {
        metrics.StaleWriteRefused(write);
        Log.StaleWriteRefused(logger, write, trialId, token, from);
    }

    private static partial class Log
    {
        [LoggerMessage(LogEventIds.Workers + 1, LogLevel.Information, "Worker {WorkerId} ({Name}) connected, re-attaching {Running} trials")]
        public static partial void WorkerConnected(ILogger logger, string workerId, string name, int running);

        [LoggerMessage(LogEventIds.Workers + 2, LogLevel.Information, "Worker {WorkerId} disconnected")]
        public static partial void WorkerDisconnected(ILogger logger, string workerId);

        [LoggerMessage(LogEventIds.Workers + 4, LogLevel.Error, "Trial {TrialId}: checkpoint not stored under {Root}: {Message}")]
        public static partial void CheckpointWriteFailed(ILogger logger, string trialId, string root, string message);

        [LoggerMessage(LogEventIds.Workers + 5, LogLevel.Warning, "Refused a {Write} for trial {TrialId} from {From}: fencing token {Token} is stale (the lease was taken back and the trial moved on)")]
        public static partial void StaleWriteRefused(ILogger logger, string write, string trialId, long token, string from);

        [LoggerMessage(LogEventIds.Workers + 3, LogLevel.Information, "Worker {WorkerId} is draining: no new trials for it; its running trials ({Running}) come back at their next epoch end")]
        public static partial void WorkerDraining(ILogger logger, string workerId, int running);
    }
}

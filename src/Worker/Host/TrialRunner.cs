using System.Collections.Concurrent;
using System.Security.Cryptography;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Orchestrator.Data;
using Orchestrator.Protocol.V1;
using Orchestrator.Specs;
using Orchestrator.Trials;
using Orchestrator.Worker.Training;
using Orchestrator.Worker.Distributed;

namespace Orchestrator.Worker.Host;

/// <summary>
/// One assigned trial on this worker, on its own thread: load data, restore the checkpoint when
/// resuming, train, report each epoch, upload checkpoints, report the outcome. Training stays on
/// this one thread (TorchSharp dispose scopes are thread-static); network calls made from it
/// block it, which is what we want for checkpoint uploads (the next epoch starts once the
/// checkpoint is safe). Two ways to end early: <see cref="Stop"/> at the next batch, and
/// <see cref="Drain"/> at the next epoch boundary, after that epoch's checkpoint is uploaded.
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA1001",
    Justification = "The stop and drain sources have no timer to release, and Stop or Drain may be called after the trial thread ended.")]
internal sealed partial class TrialRunner : ITrainingObserver
{
    private const int UploadChunk = 256 * 1024;
    private readonly WorkerAgent _agent;
    private readonly AssignTrial _assignment;
    private readonly CancellationTokenSource _stop = new();
    private readonly CancellationTokenSource _drain = new();
    private readonly ConcurrentQueue<WorkerMessage> _reports = new();
    private readonly Thread _thread;
    private string? _stopReason;
    private volatile int _epoch;
    private readonly TrialRunner? _predecessor;
    private static readonly TimeSpan PredecessorTimeout = TimeSpan.FromMinutes(2);

    /// <param name="agent">The worker.</param>
    /// <param name="assignment">What to run.</param>
    /// <param name="predecessor">
    /// An earlier assignment of the same trial on this worker that is still ending (a rank that
    /// stopped as the coordinator handed the trial straight back to this worker): this run waits
    /// for it, since both use the trial's run folder.
    /// </param>
    public TrialRunner(WorkerAgent agent, AssignTrial assignment, TrialRunner? predecessor = null)
    {
        _agent = agent;
        _assignment = assignment;
        _predecessor = predecessor;
        // The lease names this rank and its GPUs in everything the worker sends (one worker may run several ranks of a trial).
        Lease = assignment.Lease.Clone();
        Lease.Rank = assignment.Rank;
        _thread = new Thread(Run) { IsBackground = true, Name = "trial " + assignment.Lease.TrialId };
    }

    public TrialLease Lease { get; }

    private string TrialId => Lease.TrialId;

    /// <summary>Rank 0 speaks for a data-parallel trial: metrics and checkpoints come from it alone.</summary>
    private bool Reports => _assignment.Rank == 0;

    public void Start() => _thread.Start();

    public void Stop(string reason)
    {
        _stopReason ??= reason;
        _stop.Cancel();
    }

    /// <summary>
    /// Finishes the epoch in progress (its metrics and checkpoint go out as at any epoch end),
    /// then stops and hands the trial back (<see cref="TrialStatus.Types.Outcome.Drained"/>), so
    /// the coordinator re-queues it to resume from that checkpoint. Before training starts there
    /// is nothing to finish: a trial of this worker alone is handed back at once.
    /// </summary>
    public void Drain() => _drain.Cancel();

    /// <summary>What a drain waits for, for people: "epoch 3 of trial sw-1a2b3c4d-t0001".</summary>
    public string DrainTarget => _epoch > 0 ? $"epoch {_epoch} of trial {TrialId}" : $"trial {TrialId} (not training yet)";

    public void Join(TimeSpan timeout) => _thread.Join(timeout);

    /// <summary>Re-sends every report of this trial (after a reconnect); the coordinator ignores steps it has.</summary>
    public void Resend()
    {
        foreach (var r in _reports) _agent.Send(r);
    }

    private void Run()
    {
        var ct = _stop.Token;
        var outcome = TrialStatus.Types.Outcome.Completed;
        var message = "";
        // Until training starts a drain has nothing to wait for, so a trial trained by this worker
        // alone drops its set-up (data fetch, checkpoint download) at once. The ranks of a
        // data-parallel trial set up together (they form the ring) and agree on the drain at their
        // first epoch boundary instead.
        using var setup = _assignment.WorldSize > 1 ? null : CancellationTokenSource.CreateLinkedTokenSource(ct, _drain.Token);
        var setupToken = setup?.Token ?? ct;
        var training = false;
        try
        {
            if (_predecessor is not null && !_predecessor._thread.Join(PredecessorTimeout))
                throw new TimeoutException($"the previous run of {TrialId} on this worker did not stop within {PredecessorTimeout.TotalSeconds:0} s");
            var spec = TrialSpecYaml.Parse(_assignment.TrialYaml, TrialId);
            if (_agent.Options.DataDir is { } dataDir) spec.Data.Dir = dataDir;
            else if (_agent.Options.FetchData && RemoteDatasetCache.CanFetch(spec.Data))
                spec.Data.Dir = FetchData(spec.Data, setupToken);
            var data = DatasetLoader.Load(spec.Data, spec.Seed, null, setupToken);
            var device = Native.TorchRuntime.ResolveDevice(WorkerAgent.TrainingDevice(_agent.Options.Device, _assignment.Device));
            var runDir = Path.Combine(_agent.Options.WorkDir, _assignment.Rank == 0 ? TrialId : $"{TrialId}-rank{_assignment.Rank}");
            if (Directory.Exists(runDir)) Directory.Delete(runDir, recursive: true);
            Directory.CreateDirectory(runDir);
            using var ring = _assignment.WorldSize > 1 ? new RingLease(JoinCollective(ct)) : null;
            var distributed = ring is null ? null : new DistributedContext(_assignment.Rank, _assignment.WorldSize, ring.Ring);
            using var session = _assignment.Resume
                ? TrainingSession.Resume(DownloadCheckpoint(runDir, setupToken), data, device, runDir, this, distributed: distributed)
                : new TrainingSession(spec, data, device, runDir, this, distributed);
            _agent.Send(Status(TrialStatus.Types.Outcome.Started, session.EpochsCompleted > 0 ? $"resumed after epoch {session.EpochsCompleted}" : ""));
            Log.TrialStarted(_agent.Logger, TrialId, _assignment.Attempt, session.EpochsCompleted);
            training = true;
            if (session.RunUntilDrained(_drain.Token, ct))
            {
                // Every rank stops after the same epoch; the one whose worker drains says so.
                outcome = TrialStatus.Types.Outcome.Drained;
                message = $"stopped after epoch {session.EpochsCompleted}, " +
                          (_drain.IsCancellationRequested ? "the worker is shutting down" : "the worker of another rank is shutting down");
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            outcome = TrialStatus.Types.Outcome.Stopped;
            message = _stopReason ?? "stopped";
        }
        catch (Exception) when (!training && setup is { IsCancellationRequested: true } && !ct.IsCancellationRequested)
        {
            // A drain during set-up (a cancelled fetch or download, whatever it threw): nothing was trained.
            outcome = TrialStatus.Types.Outcome.Drained;
            message = "stopped before training started, the worker is shutting down";
        }
        catch (Exception e) when (e is SpecException or DataFormatException or DatasetNotFoundException or ArgumentException)
        {
            // Retrying elsewhere cannot fix bad data or an invalid trial.
            outcome = TrialStatus.Types.Outcome.FailedPermanently;
            message = e.Message;
        }
        catch (Exception) when (ct.IsCancellationRequested)
        {
            // Whatever broke while stopping (a cancelled upload, a closed ring) is part of the stop.
            outcome = TrialStatus.Types.Outcome.Stopped;
            message = _stopReason ?? "stopped";
        }
        catch (Exception e)
        {
            // Nothing may escape a trial thread: an unhandled exception would end the whole worker.
            outcome = TrialStatus.Types.Outcome.Failed;
            message = $"{e.GetType().Name}: {e.Message}";
        }
        // Only rank 0 completes a data-parallel trial (after its final checkpoint upload), or hands it back.
        if ((outcome is TrialStatus.Types.Outcome.Completed or TrialStatus.Types.Outcome.Drained) && !Reports)
            outcome = TrialStatus.Types.Outcome.RankDone;
        Log.TrialEnded(_agent.Logger, TrialId, outcome.ToString(), message);
        _agent.Send(Status(outcome, message));
        _agent.Finished(this, Summary(outcome, message));
    }

    /// <summary>How the trial ended on this worker, for the drain's last log line.</summary>
    private string Summary(TrialStatus.Types.Outcome outcome, string message) => outcome switch
    {
        TrialStatus.Types.Outcome.Completed => $"trial {TrialId} completed",
        TrialStatus.Types.Outcome.RankDone when message.Length == 0 => $"trial {TrialId}: rank {_assignment.Rank} done",
        TrialStatus.Types.Outcome.Drained => $"trial {TrialId} handed back ({message})",
        TrialStatus.Types.Outcome.RankDone => $"trial {TrialId}: rank {_assignment.Rank} {message}",
        _ => $"trial {TrialId} {outcome.ToString().ToLowerInvariant()}: {message}",
    };

    /// <summary>Brings the trial's data set from the coordinator into the worker's cache and returns its folder.</summary>
    private string FetchData(DataSpec data, CancellationToken ct)
    {
        // The trial thread waits for its data anyway; nothing else runs on it.
        var fetched = _agent.Datasets.FetchAsync(data, null, ct).GetAwaiter().GetResult();
        Log.DataFetched(_agent.Logger, TrialId, data.Name, fetched.BytesReceived, fetched.Directory);
        return fetched.Directory;
    }

    /// <summary>The trial's aggregation mode (resources.aggregation): the ring, unless the sweep asks for the coordinator.</summary>
    private IAllReduce JoinCollective(CancellationToken ct) =>
        _assignment.Aggregation == "coordinator" ? JoinCoordinator(ct) : JoinRing(ct);

    /// <summary>
    /// Joins the coordinator's gradient exchange (every rank does this at the same time), on the
    /// fastest data plane this worker can reach (bench/README.md (e)): shared memory through the
    /// coordinator's Unix socket on the coordinator's machine, else its TCP gradient socket, else
    /// (socket turned off) the gRPC stream.
    /// </summary>
    private IAllReduce JoinCoordinator(CancellationToken ct)
    {
        var options = new CoordinatorAllReduceOptions
        {
            TrialId = TrialId,
            FencingToken = Lease.FencingToken,
            Rank = _assignment.Rank,
            WorldSize = _assignment.WorldSize,
            Headers = _agent.Headers,
            Wire = Wire,
        };
        var coordinator = new Uri(_agent.Options.CoordinatorUrl);
        if (_assignment.GradientSocketPath.Length > 0 && File.Exists(_assignment.GradientSocketPath))
        {
            // On the coordinator's machine: its Unix socket (faster than loopback TCP).
            try
            {
                var local = CoordinatorSocketAllReduce.ConnectUnixAsync(options, _assignment.GradientSocketPath, ct).GetAwaiter().GetResult();
                Log.GradientPlane(_agent.Logger, TrialId, local.SharedMemory ? "shared memory" : "the coordinator's Unix socket");
                return local;
            }
            catch (CollectiveException e) when (e.InnerException is System.Net.Sockets.SocketException)
            {
                // Nothing listens there (a stale file): TCP below.
            }
        }
        if (_assignment.GradientEndpoint.Length > 0)
        {
            var (host, port) = CoordinatorSocketAllReduce.ResolveEndpoint(_assignment.GradientEndpoint, coordinator);
            var tcp = CoordinatorSocketAllReduce.ConnectAsync(options, host, port, ct).GetAwaiter().GetResult();
            Log.GradientPlane(_agent.Logger, TrialId, $"TCP to {host}:{port}");
            return tcp;
        }
        var stream = CoordinatorAllReduce.ConnectAsync(options, coordinator, ct).GetAwaiter().GetResult();
        Log.GradientPlane(_agent.Logger, TrialId, "the gRPC stream");
        return stream;
    }

    /// <summary>Forms the gradient ring with the other ranks of this trial (every rank does this at the same time).</summary>
    private Distributed.RingAllReduce JoinRing(CancellationToken ct)
    {
        var endpoints = _assignment.PeerEndpoints.Select(Distributed.RingEndpoint.Parse).ToList();
        if (endpoints.Count != _assignment.WorldSize)
            throw new InvalidOperationException($"assignment lists {endpoints.Count} peer endpoints for world size {_assignment.WorldSize}");
        if (endpoints.All(e => e.Host == endpoints[0].Host))
        {
            // Every rank on one host: Unix domain sockets (measured faster than loopback TCP,
            // bench/README.md). Paths derive from the lease, so every rank computes the same ones.
            var options = new Distributed.RingAllReduceOptions { Rank = _assignment.Rank, Endpoints = UnixEndpoints(), Wire = Wire };
            return Distributed.RingAllReduce.ConnectAsync(options, ct).GetAwaiter().GetResult();
        }
        var listener = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        // The port is reused trial after trial; connections of the last ring may still be in TIME_WAIT.
        listener.SetSocketOption(System.Net.Sockets.SocketOptionLevel.Socket, System.Net.Sockets.SocketOptionName.ReuseAddress, true);
        // This rank's own endpoint: with several GPUs, each rank of this worker listens on its GPU's port.
        listener.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Any, endpoints[_assignment.Rank].Port));
        listener.Listen(8);
        var tcp = new Distributed.RingAllReduceOptions { Rank = _assignment.Rank, Endpoints = endpoints, Wire = Wire };
        return Distributed.RingAllReduce.ConnectAsync(tcp, listener, ct).GetAwaiter().GetResult();
    }

    private Distributed.WireFormat Wire => _assignment.Wire == "bf16" ? Distributed.WireFormat.Bf16 : Distributed.WireFormat.Fp32;

    private List<Distributed.RingEndpoint> UnixEndpoints()
    {
        // Short names: a Unix socket path is limited to 107 bytes.
        var key = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(
            System.Text.Encoding.UTF8.GetBytes($"{Lease.TrialId}/{Lease.FencingToken}")))[..16];
        return Enumerable.Range(0, _assignment.WorldSize)
            .Select(r => Distributed.RingEndpoint.Unix(Path.Combine(Path.GetTempPath(), $"orch-{key}-{r}.sock")))
            .ToList();
    }

    /// <summary>Disposes the collective (ring or coordinator stream) synchronously at the end of the trial thread.</summary>
    private sealed class RingLease(IAllReduce ring) : IDisposable
    {
        public IAllReduce Ring { get; } = ring;
        public void Dispose() => Ring.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }

    private WorkerMessage Status(TrialStatus.Types.Outcome outcome, string message) =>
        new() { Status = new TrialStatus { Lease = Lease, Outcome = outcome, Message = message } };

    public void OnEpochStart(int epoch, int epochs, int batches) => _epoch = epoch;

    public void OnEpochEnd(EpochMetrics m)
    {
        if (!Reports) return;
        var point = new MetricPoint { TrialId = TrialId, Step = m.Step, Epoch = m.Epoch, Time = Timestamp.FromDateTimeOffset(DateTimeOffset.UtcNow) };
        point.Values.Add(new Dictionary<string, double>
        {
            ["train_loss"] = m.TrainLoss,
            ["train_accuracy"] = m.TrainAccuracy,
            ["val_loss"] = m.ValLoss,
            ["val_accuracy"] = m.ValAccuracy,
            ["val_top5"] = m.ValTop5,
            ["lr"] = m.LearningRate,
            ["images_per_second"] = m.ImagesPerSecond,
            ["epoch_seconds"] = m.Seconds,
            ["data_wait_seconds"] = m.DataWaitSeconds,
            ["step_seconds"] = m.MeanStepSeconds,
            ["aggregation_seconds"] = m.AggregationSeconds,
            ["aggregation_bytes"] = m.AggregationBytes,
            ["world_size"] = _assignment.WorldSize,
            ["sparsity"] = m.Sparsity,
        }.Where(kv => double.IsFinite(kv.Value)).ToDictionary());
        var report = new WorkerMessage { Metric = new MetricReport { Lease = Lease, Point = point } };
        _reports.Enqueue(report);
        _agent.Send(report);
    }

    public void OnCheckpoint(string path, CheckpointKind kind)
    {
        if (!Reports) return;
        // Blocks the training thread until the checkpoint is stored (or the trial is stopped).
        UploadAsync(path, kind == CheckpointKind.Best, _stop.Token).GetAwaiter().GetResult();
    }

    private async Task UploadAsync(string path, bool best, CancellationToken ct)
    {
        var epoch = Checkpoints.CheckpointFile.ReadHeader(path).EpochsCompleted;
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                using var call = _agent.Client.UploadCheckpoint(_agent.Headers, cancellationToken: ct);
                await using var file = File.OpenRead(path);
                // A latest checkpoint carries its epoch's metric point, in case the report was lost.
                var point = best ? null : _reports.LastOrDefault(r => r.Metric.Point.Epoch == epoch)?.Metric.Point;
                await call.RequestStream.WriteAsync(new CheckpointUpload { Header = new CheckpointHeader { Lease = Lease, Epoch = epoch, Size = file.Length, Best = best, Point = point } }, ct).ConfigureAwait(false);
                using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
                var buffer = new byte[UploadChunk];
                int n;
                while ((n = await file.ReadAsync(buffer, ct).ConfigureAwait(false)) > 0)
                {
                    sha.AppendData(buffer, 0, n);
                    await call.RequestStream.WriteAsync(new CheckpointUpload { Data = ByteString.CopyFrom(buffer, 0, n) }, ct).ConfigureAwait(false);
                }
                await call.RequestStream.WriteAsync(new CheckpointUpload { Trailer = new CheckpointTrailer { Sha256 = Convert.ToHexStringLower(sha.GetHashAndReset()) } }, ct).ConfigureAwait(false);
                await call.RequestStream.CompleteAsync().ConfigureAwait(false);
                await call.ResponseAsync.ConfigureAwait(false);
                return;
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.FailedPrecondition)
            {
                // The trial is no longer ours: stop training it.
                Stop("the coordinator refused the checkpoint: " + e.Status.Detail);
                ct.ThrowIfCancellationRequested();
                throw;
            }
            catch (Exception e) when (e is RpcException or IOException && !ct.IsCancellationRequested)
            {
                // IOException: the connection dropped under a write of the request stream (a coordinator
                // killed mid-upload); the restarted one takes the whole checkpoint again.
                Log.UploadRetry(_agent.Logger, TrialId, attempt, e is RpcException r ? r.Status.Detail : e.Message);
                await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(5000, 200 * attempt)), ct).ConfigureAwait(false);
            }
        }
    }

    private string DownloadCheckpoint(string runDir, CancellationToken ct) => DownloadAsync(runDir, ct).GetAwaiter().GetResult();

    private async Task<string> DownloadAsync(string runDir, CancellationToken ct)
    {
        var path = Path.Combine(runDir, "resume.ckpt");
        using var call = _agent.Client.DownloadTrialCheckpoint(new DownloadTrialCheckpointRequest { Lease = Lease }, _agent.Headers, cancellationToken: ct);
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        string? expected = null;
        await using (var file = File.Create(path))
        {
            await foreach (var chunk in call.ResponseStream.ReadAllAsync(ct).ConfigureAwait(false))
            {
                sha.AppendData(chunk.Data.Span);
                await file.WriteAsync(chunk.Data.Memory, ct).ConfigureAwait(false);
                if (chunk.Sha256.Length > 0) expected = chunk.Sha256;
            }
        }
        var actual = Convert.ToHexStringLower(sha.GetHashAndReset());
        if (expected is null || !string.Equals(expected, actual, StringComparison.OrdinalIgnoreCase))
            throw new IOException($"checkpoint of {TrialId} arrived damaged (sha256 {actual}, expected {expected})");
        return path;
    }

    private static partial class Log
    {
        [LoggerMessage(110, LogLevel.Information, "Trial {TrialId} attempt {Attempt} started (epochs done: {Epochs})")]
        public static partial void TrialStarted(ILogger logger, string trialId, int attempt, int epochs);

        [LoggerMessage(111, LogLevel.Information, "Trial {TrialId} ended: {Outcome} {Message}")]
        public static partial void TrialEnded(ILogger logger, string trialId, string outcome, string message);

        [LoggerMessage(112, LogLevel.Warning, "Trial {TrialId}: checkpoint upload attempt {Attempt} failed ({Reason}); retrying")]
        public static partial void UploadRetry(ILogger logger, string trialId, int attempt, string reason);

        [LoggerMessage(113, LogLevel.Information, "Trial {TrialId}: data set {Name} ready in {Dir} ({Bytes} bytes fetched from the coordinator)")]
        public static partial void DataFetched(ILogger logger, string trialId, string name, long bytes, string dir);

        [LoggerMessage(114, LogLevel.Information, "Trial {TrialId}: gradients averaged by the coordinator over {Plane}")]
        public static partial void GradientPlane(ILogger logger, string trialId, string plane);
    }
}

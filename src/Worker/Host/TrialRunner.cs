using System.Collections.Concurrent;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Orchestrator.Data;
using Orchestrator.Protocol.V1;
using Orchestrator.Specs;
using Orchestrator.Trials;
using Orchestrator.Worker.Plugins;
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
/// Everything it needs of the worker comes through <see cref="ITrialHost"/>.
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA1001",
    Justification = "The stop and drain sources have no timer to release, and Stop or Drain may be called after the trial thread ended.")]
internal sealed partial class TrialRunner : ITrainingObserver
{
    private readonly ITrialHost _host;
    private readonly AssignTrial _assignment;
    private readonly CancellationTokenSource _stop = new();
    private readonly CancellationTokenSource _drain = new();
    private readonly ConcurrentQueue<WorkerMessage> _reports = new();
    private readonly Thread _thread;
    private string? _stopReason;
    private readonly Lock _stopGate = new();
    // From an epoch's end (its report sent) to the next epoch's start: its checkpoints are being uploaded.
    private bool _betweenEpochs;
    private string? _deferredStop;
    private volatile int _epoch;
    private readonly TrialRunner? _predecessor;
    private readonly TrialLogWriter _log;
    private int _epochs;
    private static readonly TimeSpan PredecessorTimeout = TimeSpan.FromMinutes(2);

    /// <param name="host">The worker.</param>
    /// <param name="assignment">What to run.</param>
    /// <param name="predecessor">
    /// An earlier assignment of the same trial on this worker that is still ending (a rank that
    /// stopped as the coordinator handed the trial straight back to this worker): this run waits
    /// for it, since both use the trial's run folder.
    /// </param>
    public TrialRunner(ITrialHost host, AssignTrial assignment, TrialRunner? predecessor = null)
    {
        _host = host;
        _assignment = assignment;
        _predecessor = predecessor;
        // The lease names this rank and its GPUs in everything the worker sends (one worker may run several ranks of a trial).
        Lease = assignment.Lease.Clone();
        Lease.Rank = assignment.Rank;
        _log = new TrialLogWriter(host, Lease, assignment.Rank);
        _thread = new Thread(Run) { IsBackground = true, Name = "trial " + assignment.Lease.TrialId };
    }

    public TrialLease Lease { get; }

    private string TrialId => Lease.TrialId;

    /// <summary>Rank 0 speaks for a data-parallel trial: metrics and checkpoints come from it alone.</summary>
    private bool Reports => _assignment.Rank == 0;

    public void Start() => _thread.Start();

    /// <summary>
    /// Stops the trial within one training step. With <paramref name="afterCheckpoint"/> (a trial
    /// stopped early on the report of the epoch just ended) a stop that arrives between that
    /// epoch's end and the next epoch's start waits for the epoch's checkpoints to be uploaded, so
    /// the stopped trial keeps the checkpoint of the epoch it was judged on.
    /// </summary>
    public void Stop(string reason, bool afterCheckpoint = false)
    {
        lock (_stopGate)
        {
            if (afterCheckpoint && _betweenEpochs)
            {
                _deferredStop ??= reason;
                return;
            }
        }
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
        foreach (var r in _reports) _host.Send(r);
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
        _log.Write($"attempt {_assignment.Attempt} on worker {_host.Options.WorkerId}" + (_assignment.WorldSize > 1 ? $", rank {_assignment.Rank} of {_assignment.WorldSize}" : ""));
        try
        {
            if (_predecessor is not null && !_predecessor._thread.Join(PredecessorTimeout))
                throw new TimeoutException($"the previous run of {TrialId} on this worker did not stop within {PredecessorTimeout.TotalSeconds:0} s");
            var spec = TrialSpecYaml.Parse(_assignment.TrialYaml, TrialId);
            if (_host.Options.DataDir is { } dataDir) spec.Data.Dir = dataDir;
            else if (_host.Options.FetchData && RemoteDatasetCache.CanFetch(spec.Data))
                spec.Data.Dir = FetchData(spec.Data, setupToken);
            // The trial's own load context: unloaded when the trial ends, after its session (declared later, disposed first).
            using var plugins = TrialPlugins.Load(spec, locate: plugin => LocatePlugin(plugin, setupToken));
            var data = plugins.LoadData(spec.Data, spec.Seed, null, setupToken);
            var device = Native.TorchRuntime.ResolveDevice(DeviceInventory.TrainingDevice(_host.Options.Device, _assignment.Device));
            var runDir = Path.Combine(_host.Options.WorkDir, _assignment.Rank == 0 ? TrialId : $"{TrialId}-rank{_assignment.Rank}");
            if (Directory.Exists(runDir)) Directory.Delete(runDir, recursive: true);
            Directory.CreateDirectory(runDir);
            using var ring = _assignment.WorldSize > 1 ? new RingLease(_host.JoinGradientExchangeAsync(GradientExchange(), ct).GetAwaiter().GetResult()) : null;
            var distributed = ring is null ? null : new DistributedContext(_assignment.Rank, _assignment.WorldSize, ring.Ring);
            using var session = _assignment.Resume
                // The assignment's epochs, which orch extend --epochs may have raised since the checkpoint was written.
                ? TrainingSession.Resume(DownloadCheckpoint(runDir, setupToken), data, device, runDir, this, spec.Epochs, distributed,
                    name: $"the stored checkpoint of {TrialId}", plugins)
                : new TrainingSession(spec, data, device, runDir, this, distributed, plugins);
            if (session.EpochsCompleted > 0) _log.Write($"resumed from the checkpoint of epoch {session.EpochsCompleted}");
            _host.Send(Status(TrialStatus.Types.Outcome.Started, session.EpochsCompleted > 0 ? $"resumed after epoch {session.EpochsCompleted}" : ""));
            Log.TrialStarted(_host.Logger, TrialId, _assignment.Attempt, session.EpochsCompleted);
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
        catch (Exception e) when (e is SpecException or DataFormatException or DatasetNotFoundException or ArgumentException or Checkpoints.CheckpointFormatException
                                       or PluginException or InvalidDataException { InnerException: PluginException })
        {
            // Retrying elsewhere cannot fix bad data, an invalid trial or a checkpoint that is wrong inside (every attempt gets the same one).
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
        Log.TrialEnded(_host.Logger, TrialId, outcome.ToString(), message);
        // Before the outcome: a reader following the log stops once the trial has ended.
        _log.Write(EndLine(outcome, message));
        _host.Send(Status(outcome, message));
        _host.Ended(this, Summary(outcome, message));
    }

    /// <summary>The trial log's last line of this run.</summary>
    private static string EndLine(TrialStatus.Types.Outcome outcome, string message) => outcome switch
    {
        TrialStatus.Types.Outcome.Completed => "completed",
        TrialStatus.Types.Outcome.RankDone => message.Length == 0 ? "rank done" : "rank done: " + message,
        TrialStatus.Types.Outcome.Drained => "handed back: " + message,
        TrialStatus.Types.Outcome.Stopped => "stopped: " + message,
        TrialStatus.Types.Outcome.FailedPermanently => "error (no retry): " + message,
        _ => "error: " + message,
    };

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
    /// <summary>A shipped plug-in (bundle:…) comes from the coordinator, verified; a path is used as it is (a shared folder, orch local).</summary>
    private string LocatePlugin(string plugin, CancellationToken ct) =>
        Orchestrator.Plugins.PluginBundle.TryParse(plugin, out _, out _) ? _host.FetchPluginAsync(plugin, ct).GetAwaiter().GetResult() : plugin;

    private string FetchData(DataSpec data, CancellationToken ct)
    {
        // The trial thread waits for its data anyway; nothing else runs on it.
        var fetched = _host.FetchDataAsync(data, ct).GetAwaiter().GetResult();
        Log.DataFetched(_host.Logger, TrialId, data.Name, fetched.BytesReceived, fetched.Directory);
        _log.Write($"data set {data.Name} ready ({fetched.BytesReceived:N0} bytes fetched from the coordinator)");
        return fetched.Directory;
    }

    /// <summary>Where this rank exchanges gradients, from its assignment (the transport is chosen in <see cref="Distributed.GradientTransport"/>).</summary>
    private GradientTransportRequest GradientExchange() => new()
    {
        TrialId = TrialId,
        FencingToken = Lease.FencingToken,
        Rank = _assignment.Rank,
        WorldSize = _assignment.WorldSize,
        Mode = _assignment.Aggregation == Protocol.V1.AggregationMode.Coordinator ? Distributed.AggregationMode.Coordinator : Distributed.AggregationMode.Ring,
        Wire = _assignment.Wire == GradientWireFormat.Bf16 ? WireFormat.Bf16 : WireFormat.Fp32,
        PeerEndpoints = _assignment.PeerEndpoints,
        RingSecret = _assignment.RingSecret.ToByteArray(),
        CoordinatorSocketPath = _assignment.GradientSocketPath,
        CoordinatorSocketEndpoint = _assignment.GradientEndpoint,
        Coordinator = new Uri(_host.Options.CoordinatorUrl),
    };

    /// <summary>Disposes the collective (ring or coordinator stream) synchronously at the end of the trial thread.</summary>
    private sealed class RingLease(IAllReduce ring) : IDisposable
    {
        public IAllReduce Ring { get; } = ring;
        public void Dispose() => Ring.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }

    private WorkerMessage Status(TrialStatus.Types.Outcome outcome, string message) =>
        new() { Status = new TrialStatus { Lease = Lease, Outcome = outcome, Message = message } };

    public void OnRunStart(RunInfo info)
    {
        _epochs = info.Epochs;
        if (Reports) _log.Write(TrainingLines.RunStart(info));
    }

    public void OnEpochStart(int epoch, int epochs, int batches)
    {
        _epoch = epoch;
        string? deferred;
        lock (_stopGate)
        {
            _betweenEpochs = false;
            deferred = _deferredStop;
        }
        if (deferred is null) return;
        Stop(deferred);
        _stop.Token.ThrowIfCancellationRequested();
    }

    public void OnEpochEnd(EpochMetrics m)
    {
        lock (_stopGate) _betweenEpochs = true;
        if (!Reports) return;
        _log.Write(TrainingLines.Epoch(m, _epochs));
        var point = new MetricPoint { TrialId = TrialId, Step = m.Step, Epoch = m.Epoch, Time = Timestamp.FromDateTimeOffset(DateTimeOffset.UtcNow) };
        point.Values.Add(new Dictionary<string, double>
        {
            [MetricNames.TrainLoss] = m.TrainLoss,
            [MetricNames.TrainAccuracy] = m.TrainAccuracy,
            [MetricNames.ValLoss] = m.ValLoss,
            [MetricNames.ValAccuracy] = m.ValAccuracy,
            [MetricNames.ValTop5] = m.ValTop5,
            [MetricNames.LearningRate] = m.LearningRate,
            [MetricNames.ImagesPerSecond] = m.ImagesPerSecond,
            [MetricNames.EpochSeconds] = m.Seconds,
            [MetricNames.DataWaitSeconds] = m.DataWaitSeconds,
            [MetricNames.StepSeconds] = m.MeanStepSeconds,
            [MetricNames.AggregationSeconds] = m.AggregationSeconds,
            [MetricNames.AggregationBytes] = m.AggregationBytes,
            [MetricNames.WorldSize] = _assignment.WorldSize,
            [MetricNames.Sparsity] = m.Sparsity,
            [MetricNames.SkippedSteps] = m.SkippedSteps,
            [MetricNames.LossScale] = m.LossScale,
        }.Where(kv => double.IsFinite(kv.Value)).ToDictionary());
        foreach (var (name, value) in m.PluginMetrics ?? []) point.Values["val_" + name] = value;
        var report = new WorkerMessage { Metric = new MetricReport { Lease = Lease, Point = point } };
        _reports.Enqueue(report);
        _host.Send(report);
    }

    public void OnCheckpoint(string path, CheckpointKind kind)
    {
        if (!Reports) return;
        var best = kind == CheckpointKind.Best;
        var epoch = Checkpoints.CheckpointFile.ReadHeader(path).EpochsCompleted;
        // A latest checkpoint carries its epoch's metric point, in case the report was lost.
        var point = best ? null : _reports.LastOrDefault(r => r.Metric.Point.Epoch == epoch)?.Metric.Point;
        try
        {
            // Blocks the training thread until the checkpoint is stored (or the trial is stopped).
            _host.UploadCheckpointAsync(new CheckpointHeader { Lease = Lease, Epoch = epoch, Best = best, Point = point }, path, _stop.Token).GetAwaiter().GetResult();
            _log.Write(best ? $"best checkpoint so far stored (epoch {epoch})" : $"checkpoint of epoch {epoch} stored");
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.FailedPrecondition)
        {
            // The trial is no longer ours: stop training it.
            Stop("the coordinator refused the checkpoint: " + e.Status.Detail);
            _stop.Token.ThrowIfCancellationRequested();
            throw;
        }
    }

    private string DownloadCheckpoint(string runDir, CancellationToken ct)
    {
        var path = Path.Combine(runDir, "resume.ckpt");
        _host.DownloadCheckpointAsync(Lease, path, ct).GetAwaiter().GetResult();
        return path;
    }

    private static partial class Log
    {
        [LoggerMessage(110, LogLevel.Information, "Trial {TrialId} attempt {Attempt} started (epochs done: {Epochs})")]
        public static partial void TrialStarted(ILogger logger, string trialId, int attempt, int epochs);

        [LoggerMessage(111, LogLevel.Information, "Trial {TrialId} ended: {Outcome} {Message}")]
        public static partial void TrialEnded(ILogger logger, string trialId, string outcome, string message);

        [LoggerMessage(113, LogLevel.Information, "Trial {TrialId}: data set {Name} ready in {Dir} ({Bytes} bytes fetched from the coordinator)")]
        public static partial void DataFetched(ILogger logger, string trialId, string name, long bytes, string dir);
    }
}

using System.Diagnostics.Metrics;
using Orchestrator.Coordinator.Domain;
using Orchestrator.Trials;

namespace Orchestrator.Coordinator.Metrics;

/// <summary>
/// The coordinator's own metrics (meter "Orchestrator.Coordinator"), exported at /metrics. Names,
/// types and labels are listed in docs/metrics.md; a test checks that every one of them reaches a
/// real Prometheus. State gauges read the latest <see cref="MetricsSnapshot"/> (refreshed by
/// <see cref="MetricsSnapshotService"/>), so a scrape never touches the store.
/// </summary>
public sealed class CoordinatorMetrics : IDisposable
{
    public const string MeterName = "Orchestrator.Coordinator";

    private readonly Meter _meter = new(MeterName, "1.0");
    private readonly Histogram<double> _stepDuration;
    private readonly Histogram<double> _epochDuration;
    private readonly Histogram<long> _uploadBytes;
    private readonly Histogram<double> _uploadDuration;
    private readonly Histogram<double> _aggregationDuration;
    private readonly Histogram<long> _aggregationBytes;
    private readonly Counter<long> _reports;
    private readonly Counter<long> _authRefusals;
    private readonly Counter<long> _staleWrites;
    private volatile MetricsSnapshot _snapshot = MetricsSnapshot.Empty;

    public CoordinatorMetrics(Scheduling.PendingReasons pendingReasons)
    {
        _meter.CreateObservableGauge("orch_sweeps", () => _snapshot.Sweeps.Select(kv => new Measurement<long>(kv.Value, new KeyValuePair<string, object?>("state", kv.Key))),
            description: "Sweeps by state.");
        _meter.CreateObservableGauge("orch_trials", () => _snapshot.Trials.Select(kv => new Measurement<long>(kv.Value, new KeyValuePair<string, object?>("state", kv.Key))),
            description: "Trials by state, over all sweeps.");
        _meter.CreateObservableGauge("orch_workers", () => _snapshot.Workers.Select(kv => new Measurement<long>(kv.Value, new KeyValuePair<string, object?>("state", kv.Key))),
            description: "Connected workers by state (idle, busy, draining).");
        _meter.CreateObservableGauge("orch_queue_pending_trials", () => _snapshot.PendingTrials,
            description: "Trials of unfinished sweeps waiting for a worker: the autoscaling signal.");
        _meter.CreateObservableGauge("orch_queue_pending_workers", () => _snapshot.PendingWorkerDemand,
            description: "Workers the pending trials would need (pending trials × workers per trial), capped by each sweep's parallelTrials.");
        // Read from the scheduler's last pass (in memory), not from the snapshot.
        _meter.CreateObservableGauge("orch_trials_pending", () => pendingReasons.Counts().Select(c =>
                new Measurement<long>(c.Count, new KeyValuePair<string, object?>("reason", Scheduling.PendingReasonLabels.Of(c.Kind)))),
            description: "Pending trials by why they wait: parallel_limit, waiting_for_workers (not enough free slots or GPUs now), no_matching_worker (no connected worker could run them).");
        _meter.CreateObservableGauge("orch_sweep_best_objective", () => _snapshot.SweepBest,
            description: "Best objective value of each sweep so far (label metric names the objective).");
        _meter.CreateObservableGauge("orch_trial_objective", () => _snapshot.TrialObjective,
            description: "Latest objective value of each trial.");
        _meter.CreateObservableGauge("orch_trial_best_objective", () => _snapshot.TrialBestObjective,
            description: "Best objective value of each trial so far.");
        _meter.CreateObservableGauge("orch_trial_epoch", () => _snapshot.TrialEpoch,
            description: "Epochs completed by each trial.");
        _meter.CreateObservableGauge("orch_trial_loss", () => _snapshot.TrialLoss,
            description: "Latest loss of each trial (label split: train or val).");
        _meter.CreateObservableGauge("orch_trial_accuracy", () => _snapshot.TrialAccuracy,
            description: "Latest top-1 accuracy of each trial (label split: train or val).");
        _meter.CreateObservableGauge("orch_trial_samples_per_second", () => _snapshot.TrialSamplesPerSecond,
            description: "Training throughput of each trial in its latest epoch (all ranks together).");
        _stepDuration = _meter.CreateHistogram("orch_step_duration", "s", "Mean optimiser step time of an epoch, as reported by workers.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5] });
        _epochDuration = _meter.CreateHistogram("orch_epoch_duration", "s", "Wall time of an epoch including evaluation, as reported by workers.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600] });
        _uploadBytes = _meter.CreateHistogram<long>("orch_checkpoint_upload_size", "By", "Size of uploaded checkpoints.",
            advice: new InstrumentAdvice<long> { HistogramBucketBoundaries = [100_000, 1_000_000, 10_000_000, 50_000_000, 100_000_000, 500_000_000, 1_000_000_000] });
        _uploadDuration = _meter.CreateHistogram("orch_checkpoint_upload_duration", "s", "Time to receive, verify and store a checkpoint.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] });
        _aggregationDuration = _meter.CreateHistogram("orch_gradient_aggregation_duration", "s", "Time of one gradient all-reduce (data-parallel trials).",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1] });
        _aggregationBytes = _meter.CreateHistogram<long>("orch_gradient_aggregation_size", "By", "Gradient bytes per rank per all-reduce (data-parallel trials).");
        _reports = _meter.CreateCounter<long>("orch_metric_reports", "{report}", "Metric reports received from workers (duplicates included).");
        _authRefusals = _meter.CreateCounter<long>("orch_auth_refusals", "{call}",
            "Calls and gradient-socket connections refused: reason unauthenticated (no or unknown token) or permission_denied (the token lacks the role); label role is the role needed.");
        _staleWrites = _meter.CreateCounter<long>("orch_stale_writes_refused", "{write}",
            "Writes refused because the writer's fencing token is no longer the trial's (its lease expired and the trial moved on): label write is heartbeat, metric, checkpoint or outcome.");
    }

    /// <summary>The meter these instruments belong to (tests listen to this instance only).</summary>
    internal Meter Meter => _meter;

    public void Publish(MetricsSnapshot snapshot) => _snapshot = snapshot;

    public void MetricReported(IReadOnlyDictionary<string, double> values)
    {
        _reports.Add(1);
        if (values.TryGetValue(MetricNames.StepSeconds, out var step) && double.IsFinite(step)) _stepDuration.Record(step);
        if (values.TryGetValue(MetricNames.EpochSeconds, out var epoch) && double.IsFinite(epoch)) _epochDuration.Record(epoch);
        if (values.TryGetValue(MetricNames.AggregationSeconds, out var agg) && double.IsFinite(agg)) _aggregationDuration.Record(agg);
        if (values.TryGetValue(MetricNames.AggregationBytes, out var bytes) && double.IsFinite(bytes)) _aggregationBytes.Record((long)bytes);
    }

    /// <summary>Counts a refused call (<see cref="Security.AuthInterceptor"/>) or gradient-socket connection.</summary>
    public void AuthRefused(string reason, string role) =>
        _authRefusals.Add(1, new KeyValuePair<string, object?>("reason", reason), new KeyValuePair<string, object?>("role", role));

    /// <summary>
    /// Counts a write refused by fencing: a worker still acting on a lease the coordinator took back
    /// (cut off for longer than the lease timeout, say). <paramref name="write"/> is one of
    /// <c>heartbeat</c>, <c>metric</c>, <c>checkpoint</c>, <c>outcome</c>.
    /// </summary>
    public void StaleWriteRefused(string write) => _staleWrites.Add(1, new KeyValuePair<string, object?>("write", write));

    public void CheckpointUploaded(long bytes, TimeSpan duration)
    {
        _uploadBytes.Record(bytes);
        _uploadDuration.Record(duration.TotalSeconds);
    }

    public void Dispose() => _meter.Dispose();
}

/// <summary>One consistent view of the state for the gauges.</summary>
public sealed record MetricsSnapshot(
    IReadOnlyDictionary<string, long> Sweeps,
    IReadOnlyDictionary<string, long> Trials,
    IReadOnlyDictionary<string, long> Workers,
    long PendingTrials,
    long PendingWorkerDemand,
    IReadOnlyList<Measurement<double>> SweepBest,
    IReadOnlyList<Measurement<double>> TrialObjective,
    IReadOnlyList<Measurement<double>> TrialBestObjective,
    IReadOnlyList<Measurement<double>> TrialEpoch,
    IReadOnlyList<Measurement<double>> TrialLoss,
    IReadOnlyList<Measurement<double>> TrialAccuracy,
    IReadOnlyList<Measurement<double>> TrialSamplesPerSecond)
{
    public static MetricsSnapshot Empty { get; } = new(
        new Dictionary<string, long>(), new Dictionary<string, long>(), new Dictionary<string, long>(), 0, 0, [], [], [], [], [], [], []);

    /// <summary>Every state appears, with 0 when empty, so dashboards show flat lines rather than gaps.</summary>
    public static Dictionary<string, long> Zeroed<TEnum>() where TEnum : struct, Enum =>
        Enum.GetNames<TEnum>().ToDictionary(n => n.ToLowerInvariant(), _ => 0L);
}

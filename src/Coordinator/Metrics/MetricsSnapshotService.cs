using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Orchestrator.Coordinator.Domain;
using Orchestrator.Coordinator.State;
using Orchestrator.Coordinator.Sweeps;
using Orchestrator.Coordinator.Workers;
using Orchestrator.Trials;

namespace Orchestrator.Coordinator.Metrics;

/// <summary>
/// Refreshes the gauges' snapshot from the store every couple of seconds. Per-trial series exist
/// for unfinished sweeps and for <see cref="RetainFinished"/> after a sweep ends, then disappear,
/// which bounds label cardinality (docs/metrics.md). Trial counts of long-finished sweeps are
/// cached: they cannot change.
/// </summary>
public sealed partial class MetricsSnapshotService(
    IStateStore store,
    WorkerRegistry workers,
    SweepManager sweeps,
    CoordinatorMetrics metrics,
    TimeProvider clock,
    ILogger<MetricsSnapshotService> logger) : BackgroundService
{
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(2);

    private static readonly TrialStatus[] StartedStates = [TrialStatus.Running, TrialStatus.Completed, TrialStatus.Failed, TrialStatus.Cancelled, TrialStatus.Stopped];
    public static readonly TimeSpan RetainFinished = TimeSpan.FromMinutes(15);

    private readonly ConcurrentDictionary<string, IReadOnlyDictionary<string, double>> _latest = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Dictionary<string, long>> _finishedCounts = new(StringComparer.Ordinal);

    /// <summary>Remembers a trial's latest reported values (loss, accuracy, throughput) for its gauges.</summary>
    public void TrialReported(string trialId, IReadOnlyDictionary<string, double> values) => _latest[trialId] = values;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                metrics.Publish(await BuildAsync(stoppingToken).ConfigureAwait(false));
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return; // the host is stopping (also when it failed to start)
            }
            catch (Exception e) when (e is StateStoreUnavailableException or TimeoutException or InvalidOperationException)
            {
                Log.RefreshFailed(logger, e.Message);
            }
            try
            {
                await Task.Delay(Interval, clock, stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    internal async Task<MetricsSnapshot> BuildAsync(CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        var sweepStates = MetricsSnapshot.Zeroed<SweepStatus>();
        var trialStates = MetricsSnapshot.Zeroed<TrialStatus>();
        long pending = 0, demand = 0;
        List<Measurement<double>> sweepBest = [], objective = [], best = [], epoch = [], loss = [], accuracy = [], samples = [];
        var live = new HashSet<string>(StringComparer.Ordinal);
        foreach (var sweep in await store.ListSweepsAsync(ct).ConfigureAwait(false))
        {
            sweepStates[sweep.State.ToString().ToLowerInvariant()]++;
            var finished = !sweep.IsUnfinished;
            var showSeries = !finished || (sweep.FinishedAt is { } f && now - f < RetainFinished);
            if (finished && !showSeries && _finishedCounts.TryGetValue(sweep.Id, out var cached))
            {
                foreach (var (k, v) in cached) trialStates[k] += v;
                continue;
            }
            var stateCounts = await store.CountTrialsAsync(sweep.Id, ct).ConfigureAwait(false);
            var counts = Enum.GetValues<TrialStatus>().ToDictionary(st => st.ToString().ToLowerInvariant(), stateCounts.Of);
            foreach (var (k, v) in counts) trialStates[k] += v;
            if (finished && !showSeries) _finishedCounts[sweep.Id] = counts;
            var spec = sweeps.TrySpecOf(sweep);
            var metricName = spec?.ObjectiveMetric ?? "objective";
            if (!finished && spec is not null && sweep.State != SweepStatus.Paused)
            {
                pending += stateCounts.Pending;
                demand += Math.Min(stateCounts.Pending, Math.Max(0, spec.ParallelTrials - stateCounts.Running)) * Math.Max(1, spec.Workers);
            }
            if (!showSeries) continue;
            if (sweep.BestMetric is { } sb) sweepBest.Add(new(sb, Tag("sweep", sweep.Id), Tag("metric", metricName)));
            // Series exist for trials that are running or ran: pending trials (a re-queued one
            // too, until it runs again) are not read, however many wait.
            var started = new List<TrialRecord>();
            foreach (var state in StartedStates)
            {
                if (stateCounts.Of(state) > 0) started.AddRange(await store.ListTrialsPageAsync(sweep.Id, TrialPageQuery.First(int.MaxValue, state), ct).ConfigureAwait(false));
            }
            foreach (var t in started.OrderBy(t => t.Index))
            {
                if (t.Attempt == 0) continue; // cancelled before it ran: nothing to show
                live.Add(t.Id);
                KeyValuePair<string, object?>[] tags = [Tag("sweep", sweep.Id), Tag("trial", t.Id)];
                epoch.Add(new(t.Epoch, tags));
                if (t.LatestMetric is { } lm) objective.Add(new(lm, [.. tags, Tag("metric", metricName)]));
                if (t.BestMetric is { } bm) best.Add(new(bm, [.. tags, Tag("metric", metricName)]));
                if (!_latest.TryGetValue(t.Id, out var v)) continue;
                if (v.TryGetValue(MetricNames.TrainLoss, out var tl)) loss.Add(new(tl, [.. tags, Tag("split", "train")]));
                if (v.TryGetValue(MetricNames.ValLoss, out var vl)) loss.Add(new(vl, [.. tags, Tag("split", "val")]));
                if (v.TryGetValue(MetricNames.TrainAccuracy, out var ta)) accuracy.Add(new(ta, [.. tags, Tag("split", "train")]));
                if (v.TryGetValue(MetricNames.ValAccuracy, out var va)) accuracy.Add(new(va, [.. tags, Tag("split", "val")]));
                if (v.TryGetValue(MetricNames.ImagesPerSecond, out var ips)) samples.Add(new(ips, tags));
            }
        }
        foreach (var id in _latest.Keys.Where(id => !live.Contains(id)).ToList()) _latest.TryRemove(id, out _);
        var workerStates = new Dictionary<string, long> { ["idle"] = 0, ["busy"] = 0, ["draining"] = 0 };
        foreach (var w in workers.All) workerStates[w.Draining ? "draining" : w.IsBusy ? "busy" : "idle"]++;
        return new MetricsSnapshot(sweepStates, trialStates, workerStates, pending, demand, sweepBest, objective, best, epoch, loss, accuracy, samples);
    }

    private static KeyValuePair<string, object?> Tag(string key, string value) => new(key, value);

    private static partial class Log
    {
        [LoggerMessage(LogEventIds.Metrics + 1, LogLevel.Debug, "Metrics snapshot not refreshed: {Message}")]
        public static partial void RefreshFailed(ILogger logger, string message);
    }
}

using System.Diagnostics.Metrics;

namespace Orchestrator.Coordinator.Aggregation;

/// <summary>
/// Metrics of the <c>coordinator</c> aggregation mode, on the coordinator's meter
/// ("Orchestrator.Coordinator", docs/metrics.md): which data planes carry how many gradient bytes,
/// how many trials are averaging, and why exchanges fail.
/// </summary>
public sealed class GradientExchangeMetrics : IDisposable
{
    private readonly Meter _meter = new("Orchestrator.Coordinator", "1.0");
    private readonly Counter<long> _bytes;
    private readonly UpDownCounter<long> _sessions;
    private readonly Counter<long> _failures;

    public GradientExchangeMetrics()
    {
        _bytes = _meter.CreateCounter<long>("orch_gradient_exchange_received", "By",
            "Gradient bytes the coordinator received from ranks (coordinator aggregation), by data plane: grpc, tcp, unix, shm.");
        _sessions = _meter.CreateUpDownCounter<long>("orch_gradient_exchange_sessions", "{trial}",
            "Trials whose ranks currently average gradients through the coordinator.");
        _failures = _meter.CreateCounter<long>("orch_gradient_exchange_failures", "{failure}",
            "Gradient exchanges that ended in failure, by kind: timeout, closed, mismatch, superseded, unavailable.");
    }

    /// <summary>The meter these instruments belong to (tests listen to this instance only).</summary>
    internal Meter Meter => _meter;

    /// <summary>A rank's chunk arrived over <paramref name="plane"/> (grpc, tcp, unix or shm).</summary>
    public void Received(string plane, long bytes) =>
        _bytes.Add(bytes, new KeyValuePair<string, object?>("plane", plane));

    internal void SessionOpened() => _sessions.Add(1);

    internal void SessionClosed() => _sessions.Add(-1);

    /// <summary>A session failed with <paramref name="reason"/>: counted once per session.</summary>
    internal void Failed(AggregationFailure reason) =>
        _failures.Add(1, new KeyValuePair<string, object?>("kind", reason.Label));

    /// <inheritdoc />
    public void Dispose() => _meter.Dispose();
}

using System.Diagnostics.Metrics;
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Logging;
using OpenTelemetry.Metrics;
using Orchestrator.Worker.Training;

namespace Orchestrator.Worker.Host;

/// <summary>
/// Serves a worker's health probes and its metrics for Prometheus at http(s)://&lt;bind&gt;:&lt;port&gt;/metrics: training
/// (throughput, step time, data wait), GPU memory where an NVIDIA driver is present, and the .NET
/// runtime and process metrics. A small Kestrel endpoint, as on the coordinator.
/// </summary>
public sealed class WorkerTelemetry : IAsyncDisposable
{
    private static readonly Meter GpuMeter = new("Orchestrator.Worker.Gpu", "1.0");
    private const string ReadinessTag = "ready";
    private readonly WebApplication _app;

    static WorkerTelemetry()
    {
        GpuMeter.CreateObservableGauge("orch_worker_gpu_memory_used",
            () => Native.Nvml.UsedMemory().Select(g => new Measurement<long>(g.UsedBytes, new KeyValuePair<string, object?>("gpu", g.Gpu))),
            "By", "GPU memory in use, per GPU (NVML); absent without an NVIDIA driver.");
    }

    private WorkerTelemetry(WebApplication app) => _app = app;

    /// <summary>
    /// Starts serving on <paramref name="bind"/>:<paramref name="port"/> (0.0.0.0 for every interface):
    /// <c>/metrics</c>, <c>/healthz</c> (liveness: the process answers) and <c>/readyz</c> (readiness:
    /// <paramref name="ready"/> says the worker is connected and takes trials).
    /// </summary>
    /// <param name="tls">A PEM certificate and key: HTTPS only (the endpoint is exposed beyond the pod); null: plain HTTP.</param>
    /// <exception cref="InvalidDataException">A TLS file cannot be read as what it should hold (the message names it).</exception>
    public static async Task<WorkerTelemetry> StartAsync(int port, string bind, Func<bool> ready, CancellationToken ct, (string Certificate, string Key)? tls = null)
    {
        // Loaded before anything starts, so that a bad file is one error naming it.
        var certificate = tls is { } files ? Orchestrator.Configuration.TlsFiles.LoadCertificate(files.Certificate, files.Key) : null;
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Parse(bind), port, l =>
        {
            l.Protocols = HttpProtocols.Http1;
            if (certificate is not null) l.UseHttps(certificate);
        }));
        builder.Services.AddOpenTelemetry().WithMetrics(m => m
            .AddMeter(TrainingMetrics.MeterName, GpuMeter.Name)
            .AddRuntimeInstrumentation()
            .AddProcessInstrumentation()
            .AddPrometheusExporter());
        builder.Services.AddHealthChecks().AddCheck("coordinator",
            () => ready() ? HealthCheckResult.Healthy() : HealthCheckResult.Unhealthy("not connected to the coordinator, or draining"),
            tags: [ReadinessTag]);
        var app = builder.Build();
        app.MapPrometheusScrapingEndpoint("/metrics");
        app.MapHealthChecks("/healthz", new HealthCheckOptions { Predicate = c => !c.Tags.Contains(ReadinessTag) });
        app.MapHealthChecks("/readyz");
        await app.StartAsync(ct).ConfigureAwait(false);
        return new WorkerTelemetry(app);
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
    }
}

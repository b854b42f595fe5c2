using System.Net;
using OpenTelemetry.Metrics;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Orchestrator.Coordinator.Aggregation;
using Orchestrator.Coordinator.Checkpoints;
using Orchestrator.Coordinator.Data;
using Orchestrator.Coordinator.Events;
using Orchestrator.Coordinator.Grpc;
using Orchestrator.Coordinator.Scheduling;
using Orchestrator.Coordinator.State;
using Orchestrator.Coordinator.State.Redis;
using Orchestrator.Coordinator.State.Sqlite;
using Orchestrator.Coordinator.Sweeps;
using Orchestrator.Coordinator.Workers;

namespace Orchestrator.Coordinator.Hosting;

/// <summary>How to run a coordinator: where it listens and where it keeps state.</summary>
public sealed record CoordinatorHostSettings
{
    /// <summary>Address to bind (loopback by default; 0.0.0.0 in a pod).</summary>
    public string Host { get; init; } = "127.0.0.1";
    /// <summary>gRPC port (HTTP/2 without TLS); 0 picks a free port.</summary>
    public int GrpcPort { get; init; } = 5000;
    /// <summary>HTTP/1.1 port for /healthz (liveness), /readyz (readiness: the store answers) and /metrics; null: none.</summary>
    public int? HttpPort { get; init; }
    /// <summary>TCP port of the gradient socket (coordinator aggregation without gRPC framing); 0 picks a free port, null: off.</summary>
    public int? GradientPort { get; init; } = 0;
    /// <summary>Redis configuration string (host:port,…); null uses the SQLite store under <see cref="StateDir"/>.</summary>
    public string? Redis { get; init; }
    /// <summary>Key prefix in Redis, so coordinators (or tests) can share one server.</summary>
    public string RedisPrefix { get; init; } = "orch";
    /// <summary>Folder for the embedded store and, by default, checkpoints.</summary>
    public string StateDir { get; init; } = ".orch";
    /// <summary>Checkpoint folder (default: &lt;StateDir&gt;/checkpoints).</summary>
    public string? CheckpointDir { get; init; }
    /// <summary>Data sets served to workers: searched first for catalog data, the root of imagefolder data (docs/data.md, "Data delivery").</summary>
    public string? DataDir { get; init; }
    public Action<CoordinatorOptions>? Configure { get; init; }
    /// <summary>Log level for the coordinator's own categories.</summary>
    public LogLevel LogLevel { get; init; } = LogLevel.Information;
}

/// <summary>Builds the coordinator web host (used by the Coordinator program, `orch coordinator` and `orch local`).</summary>
public static class CoordinatorHost
{
    public static WebApplication Build(CoordinatorHostSettings settings, string[]? args = null)
    {
        var builder = WebApplication.CreateSlimBuilder(args ?? []);
        builder.Logging.SetMinimumLevel(LogLevel.Warning).AddFilter("Orchestrator", settings.LogLevel);
        builder.WebHost.ConfigureKestrel(k =>
        {
            var address = IPAddress.Parse(settings.Host);
            k.Listen(address, settings.GrpcPort, l => l.Protocols = HttpProtocols.Http2);
            if (settings.HttpPort is { } http) k.Listen(address, http, l => l.Protocols = HttpProtocols.Http1);
        });
        builder.Services.AddCoordinatorServices(settings);
        var app = builder.Build();
        app.MapCoordinatorEndpoints();
        return app;
    }

    public static IServiceCollection AddCoordinatorServices(this IServiceCollection services, CoordinatorHostSettings settings)
    {
        var options = new CoordinatorOptions();
        settings.Configure?.Invoke(options);
        services.AddOptions<CoordinatorOptions>().BindConfiguration("Coordinator").Configure(o =>
        {
            o.HeartbeatInterval = options.HeartbeatInterval;
            o.LeaseTimeout = options.LeaseTimeout;
            o.SchedulerInterval = options.SchedulerInterval;
            o.MaxTrialAttempts = options.MaxTrialAttempts;
            o.MaxGridPoints = options.MaxGridPoints;
            o.MaxWorkersPerTrial = options.MaxWorkersPerTrial;
            o.AuthToken = options.AuthToken ?? Environment.GetEnvironmentVariable(Orchestrator.Configuration.EnvironmentVariables.Token);
            o.MaxMessageBytes = options.MaxMessageBytes;
        });
        services.AddOptions<CheckpointStoreOptions>().Configure(o => o.Root = settings.CheckpointDir ?? Path.Combine(settings.StateDir, "checkpoints"));
        services.AddSingleton(TimeProvider.System);
        // Opened once at start-up (before requests), so blocking here cannot starve anything.
        services.AddSingleton<IStateStore>(_ => settings.Redis is { } redis
            ? RedisStateStore.ConnectAsync(redis, settings.RedisPrefix, CancellationToken.None).GetAwaiter().GetResult()
            : SqliteStateStore.OpenAsync(settings.StateDir, CancellationToken.None).GetAwaiter().GetResult());
        services.AddSingleton<CheckpointStore>();
        services.AddSingleton<CheckpointRetention>();
        services.AddDataDelivery(settings);
        services.AddSingleton<WorkerRegistry>();
        services.AddSingleton<SweepEvents>();
        services.AddSingleton<SweepManager>();
        services.AddGradientAggregation();
        services.Configure<Aggregation.GradientAggregationOptions>(o =>
        {
            o.SocketPort = settings.GradientPort;
            o.SocketAddress = settings.Host;
        });
        services.AddSingleton<PendingReasons>();
        services.AddSingleton<TrialScheduler>();
        services.AddHostedService(sp => sp.GetRequiredService<TrialScheduler>());
        services.AddSingleton<AuthInterceptor>();
        services.AddSingleton<ExceptionInterceptor>();
        services.AddGrpc(o =>
        {
            o.MaxReceiveMessageSize = options.MaxMessageBytes;
            o.MaxSendMessageSize = options.MaxMessageBytes;
            o.EnableDetailedErrors = false;
            o.Interceptors.Add<AuthInterceptor>();
            o.Interceptors.Add<ExceptionInterceptor>();
        });
        services.AddHealthChecks().AddCheck<StateStoreHealthCheck>("state-store", tags: [StateStoreHealthCheck.ReadinessTag]);
        services.AddSingleton<Metrics.CoordinatorMetrics>();
        services.AddSingleton<Metrics.MetricsSnapshotService>();
        services.AddHostedService(sp => sp.GetRequiredService<Metrics.MetricsSnapshotService>());
        services.AddOpenTelemetry().WithMetrics(m => m
            .AddMeter(Metrics.CoordinatorMetrics.MeterName)
            .AddAspNetCoreInstrumentation()
            .AddRuntimeInstrumentation()
            .AddProcessInstrumentation()
            .AddPrometheusExporter());
        return services;
    }

    public static WebApplication MapCoordinatorEndpoints(this WebApplication app)
    {
        app.MapGrpcService<SweepsService>();
        app.MapGrpcService<WorkerGatewayService>();
        app.MapGrpcService<DataSetsService>();
        app.MapGrpcService<GradientExchangeService>();
        // Liveness: the process serves requests. Readiness: its state store answers too.
        app.MapHealthChecks("/healthz", new HealthCheckOptions { Predicate = c => !c.Tags.Contains(StateStoreHealthCheck.ReadinessTag) });
        app.MapHealthChecks("/readyz");
        // Prometheus scrapes over HTTP/1.1: the endpoint answers on the HTTP port only.
        app.MapPrometheusScrapingEndpoint("/metrics");
        return app;
    }
}

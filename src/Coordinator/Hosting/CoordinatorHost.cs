using System.Globalization;
using System.Net;
using Grpc.AspNetCore.Server;
using Microsoft.Extensions.Configuration.CommandLine;
using Microsoft.Extensions.Configuration.Memory;
using Microsoft.Extensions.Options;
using Orchestrator.Configuration;
using OpenTelemetry.Metrics;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Orchestrator.Coordinator.Aggregation;
using Orchestrator.Coordinator.Checkpoints;
using Orchestrator.Coordinator.Configuration;
using Orchestrator.Coordinator.Data;
using Orchestrator.Coordinator.Events;
using Orchestrator.Coordinator.Grpc;
using Orchestrator.Coordinator.Grpc.Gradients;
using Orchestrator.Coordinator.Scheduling;
using Orchestrator.Coordinator.State;
using Orchestrator.Coordinator.State.Redis;
using Orchestrator.Coordinator.State.Sqlite;
using Orchestrator.Coordinator.Sweeps;
using Orchestrator.Coordinator.Workers;

namespace Orchestrator.Coordinator.Hosting;

/// <summary>
/// A coordinator set up in code (`orch local`, tests, benchmarks): these values override every
/// other source, and no <c>ORCH_*</c> variable is read. The coordinator program and
/// `orch coordinator` read their settings from configuration instead (<see cref="CoordinatorHost.Build(string[], IEnumerable{KeyValuePair{string, string?}}?, IEnumerable{KeyValuePair{string, string?}}?)"/>).
/// </summary>
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
    /// <summary>Changes to <see cref="CoordinatorOptions"/>, applied after configuration is bound.</summary>
    public Action<CoordinatorOptions>? Configure { get; init; }
    /// <summary>Log level for the coordinator's own categories.</summary>
    public LogLevel LogLevel { get; init; } = LogLevel.Information;

    /// <summary>These settings as configuration keys (docs/operations.md).</summary>
    public IEnumerable<KeyValuePair<string, string?>> ToConfiguration() => new Dictionary<string, string?>
    {
        ["Listen:Address"] = Host,
        ["Listen:GrpcPort"] = GrpcPort.ToString(CultureInfo.InvariantCulture),
        ["Listen:HttpPort"] = HttpPort?.ToString(CultureInfo.InvariantCulture) ?? "",
        ["Listen:GradientPort"] = GradientPort?.ToString(CultureInfo.InvariantCulture) ?? "off",
        ["State:Redis"] = Redis ?? "",
        ["State:RedisPrefix"] = RedisPrefix,
        ["State:Dir"] = StateDir,
        ["State:CheckpointDir"] = CheckpointDir ?? "",
        ["Data:Dir"] = DataDir ?? "",
        ["Logging:LogLevel:Orchestrator"] = LogLevel.ToString(),
    };
}

/// <summary>
/// Builds the coordinator web host. Every setting is read through the configuration system and
/// bound once to its options class (<see cref="ListenSettings"/>, <see cref="StateSettings"/>,
/// <see cref="DataSettings"/>, <see cref="CoordinatorOptions"/>), validated when the host starts:
/// a bad value stops it with one line naming the setting (<see cref="SettingException"/>).
/// </summary>
public static class CoordinatorHost
{
    /// <summary>The coordinator program's defaults, for a container (below appsettings.json, variables and flags).</summary>
    public static readonly IReadOnlyDictionary<string, string?> ProgramDefaults = new Dictionary<string, string?>
    {
        ["Listen:Address"] = "0.0.0.0",
        ["Listen:HttpPort"] = "5001",
        ["State:Dir"] = "/var/lib/orchestrator",
    };

    /// <summary>
    /// The coordinator program and `orch coordinator`: <paramref name="defaults"/>, then
    /// appsettings.json (optional, in the working folder), then environment variables (the
    /// <c>ORCH_*</c> ones of <see cref="Settings.Coordinator"/>, and <c>Section__Key</c>), then
    /// <paramref name="args"/> (<c>--Listen:GrpcPort 5000</c>), then <paramref name="flags"/>, each
    /// overriding the ones before.
    /// </summary>
    public static WebApplication Build(string[] args, IEnumerable<KeyValuePair<string, string?>>? defaults = null, IEnumerable<KeyValuePair<string, string?>>? flags = null) =>
        Build(args, defaults, flags, Environment.GetEnvironmentVariable);

    /// <summary>As above, with the <c>ORCH_*</c> variables read by <paramref name="environment"/>.</summary>
    internal static WebApplication Build(string[] args, IEnumerable<KeyValuePair<string, string?>>? defaults, IEnumerable<KeyValuePair<string, string?>>? flags, Func<string, string?> environment) =>
        Build(args, defaults, Settings.FromEnvironment(Settings.Coordinator, environment).ToList(), flags, configure: null);

    /// <summary>A coordinator set up in code: <paramref name="settings"/> override configuration, and no <c>ORCH_*</c> variable is read.</summary>
    public static WebApplication Build(CoordinatorHostSettings settings, string[]? args = null)
    {
        ArgumentNullException.ThrowIfNull(settings);
        return Build(args ?? [], defaults: null, environment: null, settings.ToConfiguration(), settings.Configure);
    }

    private static WebApplication Build(string[] args, IEnumerable<KeyValuePair<string, string?>>? defaults,
        IEnumerable<KeyValuePair<string, string?>>? environment, IEnumerable<KeyValuePair<string, string?>>? overrides, Action<CoordinatorOptions>? configure)
    {
        var builder = WebApplication.CreateSlimBuilder(args);
        var sources = ((IConfigurationBuilder)builder.Configuration).Sources;
        // Lowest first: defaults under appsettings.json; ORCH_* variables just under the command line, like the other variables.
        sources.Insert(0, new MemoryConfigurationSource { InitialData = ConsoleLogs.DefaultLevels.Concat(defaults ?? []) });
        var commandLine = sources.Select((s, i) => (s, i)).LastOrDefault(x => x.s is CommandLineConfigurationSource).i;
        if (environment is not null) sources.Insert(commandLine > 0 ? commandLine : sources.Count, new MemoryConfigurationSource { InitialData = environment.ToList() });
        if (overrides is not null) sources.Add(new MemoryConfigurationSource { InitialData = overrides.ToList() });

        builder.Logging.AddConsoleLogs(builder.Configuration, Settings.Coordinator);
        builder.WebHost.ConfigureKestrel(k =>
        {
            var listen = k.ApplicationServices.GetRequiredService<IOptions<ListenSettings>>().Value;
            var address = IPAddress.Parse(listen.Address);
            var tls = CoordinatorTls.Configure(listen);
            k.Listen(address, listen.GrpcPort, l =>
            {
                l.Protocols = HttpProtocols.Http2;
                if (tls is not null) l.UseHttps(tls);
            });
            if (listen.HttpPort is { } http)
                k.Listen(address, http, l =>
                {
                    l.Protocols = HttpProtocols.Http1;
                    if (tls is not null) l.UseHttps(tls);
                });
        });
        builder.Services.AddCoordinatorServices(configure);
        var app = builder.Build();
        app.MapCoordinatorEndpoints();
        return app;
    }

    /// <summary>
    /// Builds and runs the coordinator program until it is stopped. A bad setting ends it at
    /// start with one line on standard error and exit code 2.
    /// </summary>
    public static async Task<int> RunProgramAsync(string[] args)
    {
        try
        {
            await using var app = Build(args, ProgramDefaults);
            await app.RunAsync().ConfigureAwait(false);
            return 0;
        }
        catch (Exception e) when (SettingError(e) is { } message)
        {
            await Console.Error.WriteLineAsync("coordinator: " + message).ConfigureAwait(false);
            return 2;
        }
    }

    /// <summary>The one line to show for a bad setting found at start, or null when <paramref name="e"/> is something else.</summary>
    public static string? SettingError(Exception e) => e switch
    {
        SettingException s => s.Message,
        OptionsValidationException o => string.Join("; ", o.Failures),
        _ => null,
    };

    public static IServiceCollection AddCoordinatorServices(this IServiceCollection services, Action<CoordinatorOptions>? configure = null)
    {
        services.AddSettings<ListenSettings>("Listen", Settings.Coordinator);
        services.AddSettings<StateSettings>("State", Settings.Coordinator);
        services.AddSettings<DataSettings>("Data", Settings.Coordinator);
        services.AddSettings("Coordinator", Settings.Coordinator, configure);
        services.AddOptions<CheckpointStoreOptions>().Configure<IOptions<StateSettings>>((o, state) => o.Root = state.Value.CheckpointRoot);
        services.AddSingleton(TimeProvider.System);
        // Opened once at start-up (before requests), so blocking here cannot starve anything.
        services.AddSingleton<IStateStore>(sp => sp.GetRequiredService<IOptions<StateSettings>>().Value is { UsesRedis: true } redis
            ? RedisStateStore.ConnectAsync(redis.Redis!, redis.RedisPrefix, CancellationToken.None).GetAwaiter().GetResult()
            : SqliteStateStore.OpenAsync(sp.GetRequiredService<IOptions<StateSettings>>().Value.Dir, CancellationToken.None).GetAwaiter().GetResult());
        services.AddSingleton<StoreResilience>();
        services.AddSingleton<CheckpointStore>();
        services.AddSingleton<Plugins.PluginStore>();
        services.AddDataDelivery((o, sp) =>
        {
            o.DataDir = sp.GetRequiredService<IOptions<DataSettings>>().Value.Dir is { Length: > 0 } dir ? dir : null;
            o.PackRoot = Path.Combine(sp.GetRequiredService<IOptions<StateSettings>>().Value.Dir, "data", "packed");
        });
        services.AddSingleton<WorkerRegistry>();
        services.AddSingleton<SweepEvents>();
        services.AddSweeps();
        services.AddGradientAggregation();
        // The gradient socket is one of the coordinator's listening ports: it follows the Listen settings.
        services.AddOptions<Aggregation.GradientAggregationOptions>().Configure<IOptions<ListenSettings>>((o, listen) =>
        {
            o.SocketPort = listen.Value.GradientSocketPort;
            o.SocketAddress = listen.Value.Address;
        });
        services.AddSingleton<PendingReasons>();
        services.AddSingleton<TrialScheduler>();
        services.AddHostedService(sp => sp.GetRequiredService<TrialScheduler>());
        services.AddSingleton<Security.Credentials>();
        services.AddSingleton<Security.AuthInterceptor>();
        services.AddSingleton<ExceptionInterceptor>();
        services.AddGrpc(o =>
        {
            o.EnableDetailedErrors = false;
            o.Interceptors.Add<Security.AuthInterceptor>();
            o.Interceptors.Add<ExceptionInterceptor>();
        });
        services.AddOptions<GrpcServiceOptions>().Configure<IOptions<CoordinatorOptions>>((o, coordinator) =>
        {
            o.MaxReceiveMessageSize = coordinator.Value.MaxMessageBytes;
            o.MaxSendMessageSize = coordinator.Value.MaxMessageBytes;
        });
        services.AddCoordinatorHealth();
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
        app.MapGrpcService<PluginsService>();
        app.MapGrpcService<GradientExchangeService>();
        // Liveness: the process serves requests. Readiness: its state store answers too (HTTP and gRPC).
        app.MapCoordinatorHealth();
        // Prometheus scrapes over HTTP/1.1: the endpoint answers on the HTTP port only.
        app.MapPrometheusScrapingEndpoint("/metrics");
        return app;
    }
}

using System.ComponentModel.DataAnnotations;
using Microsoft.Extensions.Configuration;
using Orchestrator.Configuration;

namespace Orchestrator.Worker.Host;

/// <summary>The settings of the `orch worker` process around its agent (configuration section "Worker").</summary>
public sealed class WorkerServiceSettings : IValidatableObject
{
    /// <summary>Port of /metrics, /healthz and /readyz; unset: none.</summary>
    [Range(0, 65535, ErrorMessage = "must be a port number from 0 to 65535")]
    public int? MetricsPort { get; set; }

    /// <summary>Address of <see cref="MetricsPort"/> (0.0.0.0 in a pod).</summary>
    [Required]
    public string MetricsBind { get; set; } = "127.0.0.1";

    /// <summary>PEM certificate of <see cref="MetricsPort"/>: with <see cref="MetricsTlsKey"/> it serves HTTPS only; unset: plain HTTP.</summary>
    public string? MetricsTlsCertificate { get; set; }

    /// <summary>PEM private key of <see cref="MetricsTlsCertificate"/>.</summary>
    public string? MetricsTlsKey { get; set; }

    /// <summary>Seconds a SIGTERM drain may take before the worker stops at once; 0 stops at once.</summary>
    [Range(0, 7 * 24 * 3600, ErrorMessage = "must be from 0 to 604800 seconds")]
    public int DrainTimeout { get; set; } = 600;

    /// <summary>Whether to fetch data sets from the coordinator; unset: yes unless a data folder is given.</summary>
    public bool? FetchData { get; set; }

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (string.IsNullOrEmpty(MetricsTlsCertificate) != string.IsNullOrEmpty(MetricsTlsKey))
            yield return new ValidationResult("the metrics port's TLS needs both a certificate (--metrics-tls-cert) and its key (--metrics-tls-key)",
                [string.IsNullOrEmpty(MetricsTlsCertificate) ? nameof(MetricsTlsCertificate) : nameof(MetricsTlsKey)]);
        foreach (var (file, name) in new[] { (MetricsTlsCertificate, nameof(MetricsTlsCertificate)), (MetricsTlsKey, nameof(MetricsTlsKey)) })
            if (!string.IsNullOrEmpty(file) && !File.Exists(file))
                yield return new ValidationResult($"{file}: no such file", [name]);
    }
}

/// <summary>
/// How `orch worker` reads its settings: defaults, then appsettings.json (optional, in the working
/// folder), then environment variables (the <c>ORCH_*</c> ones of <see cref="Settings.Worker"/>,
/// and <c>Worker__Key</c>), then flags, each overriding the ones before; bound once to
/// <see cref="WorkerAgentOptions"/> and <see cref="WorkerServiceSettings"/> and validated.
/// </summary>
public static class WorkerConfiguration
{
    /// <summary>The configuration section of the worker's settings.</summary>
    public const string Section = "Worker";

    /// <summary>Layers the sources; <paramref name="environment"/> reads a variable (default: the process environment).</summary>
    public static IConfiguration Build(IEnumerable<KeyValuePair<string, string?>> flags, Func<string, string?>? environment = null, string file = "appsettings.json")
    {
        var builder = new ConfigurationBuilder()
            .AddInMemoryCollection(ConsoleLogs.DefaultLevels)
            .AddJsonFile(Path.GetFullPath(file), optional: true, reloadOnChange: false);
        if (environment is null) builder.AddEnvironmentVariables();
        return builder
            .AddInMemoryCollection(Settings.FromEnvironment(Settings.Worker, environment))
            .AddInMemoryCollection(flags)
            .Build();
    }

    /// <summary>Binds and validates the worker's settings.</summary>
    /// <exception cref="SettingException">A bad value, named in one line.</exception>
    public static (WorkerAgentOptions Agent, WorkerServiceSettings Service) Bind(IConfiguration configuration)
    {
        var service = SettingsBinder.Bind<WorkerServiceSettings>(configuration, Section, Settings.Worker);
        var agent = new WorkerAgentOptions { CoordinatorUrl = WorkerAgentOptions.DefaultCoordinatorUrl };
        SettingsBinder.BindInto(configuration, Section, Settings.Worker, agent);
        // A worker without a shared data folder fetches its data sets from the coordinator.
        agent = agent with { FetchData = service.FetchData ?? string.IsNullOrEmpty(agent.DataDir) };
        SettingsBinder.Validate(agent, Section, Settings.Worker);
        return (agent, service);
    }
}

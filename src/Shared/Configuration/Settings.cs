namespace Orchestrator.Configuration;

/// <summary>
/// One setting of a program: its configuration key (appsettings.json, or <c>Section__Name</c> as
/// an environment variable), the <c>ORCH_*</c> variable that also sets it, and its command-line flag.
/// </summary>
/// <param name="Key">Configuration key, e.g. <c>Listen:GrpcPort</c>.</param>
/// <param name="Variable">Its <c>ORCH_*</c> environment variable, or null.</param>
/// <param name="Flag">Its flag (of <c>orch coordinator</c> or <c>orch worker</c>), or null.</param>
public sealed record Setting(string Key, string? Variable, string? Flag)
{
    /// <summary>"Listen:GrpcPort (ORCH_GRPC_PORT, --port)": how people can set it.</summary>
    public override string ToString() =>
        Variable is null && Flag is null ? Key : $"{Key} ({string.Join(", ", new[] { Variable, Flag }.OfType<string>())})";
}

/// <summary>
/// The settings of the coordinator and of <c>orch worker</c>, in one place: which
/// <c>ORCH_*</c> variable and which flag set each configuration key. Every program reads them
/// through the configuration system, lowest precedence first: the option class's default,
/// appsettings.json (optional, in the working folder), environment variables, flags.
/// docs/operations.md lists them with their defaults and meanings.
/// </summary>
public static class Settings
{
    /// <summary>The coordinator's settings (its program and <c>orch coordinator</c>).</summary>
    public static readonly IReadOnlyList<Setting> Coordinator =
    [
        new("Listen:Address", EnvironmentVariables.Bind, "--bind"),
        new("Listen:GrpcPort", EnvironmentVariables.GrpcPort, "--port"),
        new("Listen:HttpPort", EnvironmentVariables.HttpPort, "--http-port"),
        new("Listen:GradientPort", EnvironmentVariables.GradientPort, "--gradient-port"),
        new("Listen:TlsCertificate", EnvironmentVariables.TlsCertificate, "--tls-cert"),
        new("Listen:TlsKey", EnvironmentVariables.TlsKey, "--tls-key"),
        new("Listen:TlsClientCa", EnvironmentVariables.TlsClientCa, "--tls-client-ca"),
        new("State:Redis", EnvironmentVariables.Redis, "--redis"),
        new("State:RedisPrefix", null, "--redis-prefix"),
        new("State:Dir", EnvironmentVariables.StateDir, "--state-dir"),
        new("State:CheckpointDir", EnvironmentVariables.CheckpointDir, "--checkpoint-dir"),
        new("Data:Dir", EnvironmentVariables.DataDir, "--data-dir"),
        new("Coordinator:AuthToken", EnvironmentVariables.Token, null),
        new("Coordinator:WorkerToken", EnvironmentVariables.WorkerToken, null),
        new("Coordinator:UserToken", EnvironmentVariables.UserToken, null),
        new("Coordinator:ViewerToken", EnvironmentVariables.ViewerToken, null),
        new("Coordinator:LeaseTimeout", null, "--lease-timeout"),
        new("Coordinator:HeartbeatInterval", null, null),
        new("Coordinator:SchedulerInterval", null, null),
        new("Coordinator:MaxTrialAttempts", null, null),
        new("Coordinator:MaxGridPoints", null, null),
        new("Coordinator:MaxWorkersPerTrial", null, null),
        new("Coordinator:MaxMessageBytes", null, null),
        new(LogFormatKey, EnvironmentVariables.LogFormat, "--log-format"),
    ];

    /// <summary>The settings of <c>orch worker</c>.</summary>
    public static readonly IReadOnlyList<Setting> Worker =
    [
        new("Worker:CoordinatorUrl", EnvironmentVariables.Coordinator, "--coordinator"),
        new("Worker:WorkerId", null, "--id"),
        new("Worker:Name", null, null),
        new("Worker:Device", null, "--device"),
        new("Worker:Devices", null, "--devices"),
        // Not ORCH_DATA_DIR: that one is where data sets are searched first (every command), while
        // this replaces the data folder of every trial.
        new("Worker:DataDir", null, "--data-dir"),
        new("Worker:FetchData", null, "--fetch-data"),
        new("Worker:WorkDir", null, "--work-dir"),
        new("Worker:TorchThreads", null, "--threads"),
        new("Worker:LibTorchDir", EnvironmentVariables.LibTorchDir, "--libtorch-dir"),
        new("Worker:DataPort", null, "--data-port"),
        new("Worker:AdvertiseHost", EnvironmentVariables.AdvertiseHost, "--advertise-host"),
        new("Worker:Token", EnvironmentVariables.Token, null),
        new("Worker:TlsCa", EnvironmentVariables.TlsCa, "--tls-ca"),
        new("Worker:TlsClientCertificate", EnvironmentVariables.TlsClientCertificate, "--tls-client-cert"),
        new("Worker:TlsClientKey", EnvironmentVariables.TlsClientKey, "--tls-client-key"),
        new("Worker:MaxBackoff", null, null),
        new("Worker:MetricsPort", null, "--metrics-port"),
        new("Worker:MetricsBind", null, "--metrics-bind"),
        new("Worker:MetricsTlsCertificate", null, "--metrics-tls-cert"),
        new("Worker:MetricsTlsKey", null, "--metrics-tls-key"),
        new("Worker:DrainTimeout", null, "--drain-timeout"),
        new(LogFormatKey, EnvironmentVariables.LogFormat, "--log-format"),
    ];

    /// <summary>The key of the log format (<c>simple</c> or <c>json</c>).</summary>
    public const string LogFormatKey = "Logging:Format";

    /// <summary>The <c>ORCH_*</c> variables among <paramref name="settings"/>.</summary>
    public static IEnumerable<string> Variables(IEnumerable<Setting> settings) =>
        settings.Select(s => s.Variable).OfType<string>().Distinct(StringComparer.Ordinal);

    /// <summary>
    /// The <c>ORCH_*</c> variables that are set, as configuration keys and values: the one place
    /// the programs read their settings from the environment. Empty values count as unset.
    /// </summary>
    /// <param name="settings">The program's settings.</param>
    /// <param name="read">Reads a variable (default: the process environment).</param>
    public static IEnumerable<KeyValuePair<string, string?>> FromEnvironment(IEnumerable<Setting> settings, Func<string, string?>? read = null)
    {
        ArgumentNullException.ThrowIfNull(settings);
        read ??= Environment.GetEnvironmentVariable;
        foreach (var s in settings)
        {
            if (s.Variable is not null && read(s.Variable) is { Length: > 0 } value)
                yield return new(s.Key, value);
        }
    }

    /// <summary>How people can set <paramref name="key"/>, for error messages: "Listen:GrpcPort (ORCH_GRPC_PORT, --port)".</summary>
    public static string Describe(IEnumerable<Setting> settings, string key) =>
        settings.FirstOrDefault(s => string.Equals(s.Key, key, StringComparison.OrdinalIgnoreCase))?.ToString() ?? key;
}

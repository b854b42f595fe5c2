using System.ComponentModel.DataAnnotations;

namespace Orchestrator.Worker.Host;

/// <summary>How a worker runs (configuration section "Worker", see <see cref="WorkerConfiguration"/>).</summary>
public sealed record WorkerAgentOptions : IValidatableObject
{
    /// <summary>Where `orch worker` looks for its coordinator unless told.</summary>
    public const string DefaultCoordinatorUrl = "http://127.0.0.1:5000";

    /// <summary>The coordinator's gRPC address, e.g. http://coordinator:5000.</summary>
    public required string CoordinatorUrl { get; init; }
    /// <summary>Stable identity; defaults to host name + process id.</summary>
    public string WorkerId { get; init; } = $"{Environment.MachineName.ToLowerInvariant()}-{Environment.ProcessId}";
    public string? Name { get; init; }
    /// <summary>auto, cpu, cuda, cuda:N.</summary>
    public string Device { get; init; } = "auto";
    /// <summary>
    /// The GPUs to offer the coordinator (<see cref="DeviceInventory.Syntax"/>); null or auto
    /// detects them. Each GPU is a scheduling slot: a trial (or rank) assigned to it trains on it.
    /// </summary>
    public string? Devices { get; init; }
    /// <summary>Overrides the data folder of every trial (a shared volume with the data sets).</summary>
    public string? DataDir { get; init; }
    /// <summary>
    /// Without <see cref="DataDir"/>: fetch each trial's data set from the coordinator into
    /// &lt;WorkDir&gt;/datasets (docs/data.md, "Data delivery") instead of resolving it on this machine.
    /// Off by default here, because in-process workers (orch local) share the coordinator's disk;
    /// `orch worker` turns it on unless a data folder is given (<see cref="WorkerConfiguration"/>).
    /// </summary>
    public bool FetchData { get; init; }
    /// <summary>Scratch folder for run folders and downloaded checkpoints.</summary>
    public string WorkDir { get; init; } = Path.Combine(Path.GetTempPath(), "orch-worker");
    /// <summary>Bearer token when the coordinator requires one.</summary>
    public string? Token { get; init; }
    /// <summary>PEM CA to verify an https:// coordinator's certificate against (ORCH_TLS_CA); unset: the system's roots.</summary>
    public string? TlsCa { get; init; }
    /// <summary>PEM client certificate for mutual TLS (ORCH_TLS_CLIENT_CERT), with <see cref="TlsClientKey"/>.</summary>
    public string? TlsClientCertificate { get; init; }
    /// <summary>PEM private key of <see cref="TlsClientCertificate"/> (ORCH_TLS_CLIENT_KEY).</summary>
    public string? TlsClientKey { get; init; }
    /// <summary>libtorch intra-op threads (process-wide); null leaves libtorch's default.</summary>
    [Range(1, 4096, ErrorMessage = "must be from 1 to 4096")]
    public int? TorchThreads { get; init; }
    /// <summary>Optional explicit libtorch folder (see TorchRuntime).</summary>
    public string? LibTorchDir { get; init; }
    /// <summary>Port for gradient exchange with peers in data-parallel trials; 0 picks a free one at start.</summary>
    [Range(0, 65535, ErrorMessage = "must be a port number from 0 to 65535 (0: a free one)")]
    public int DataPort { get; init; }
    /// <summary>Host name or address peers use to reach <see cref="DataPort"/> (a pod IP on Kubernetes);
    /// default: 127.0.0.1 when the coordinator is on loopback, else this machine's host name.</summary>
    public string? AdvertiseHost { get; init; }
    /// <summary>Longest wait between reconnection attempts.</summary>
    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(5);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (!Uri.TryCreate(CoordinatorUrl, UriKind.Absolute, out var url) || url.Scheme is not ("http" or "https"))
            yield return new ValidationResult($"'{CoordinatorUrl}' is not an http:// or https:// address (e.g. http://coordinator:5000)", [nameof(CoordinatorUrl)]);
        if (string.IsNullOrWhiteSpace(WorkerId) || WorkerId.Length > 128)
            yield return new ValidationResult("must be 1 to 128 characters", [nameof(WorkerId)]);
        if (string.IsNullOrEmpty(TlsClientCertificate) != string.IsNullOrEmpty(TlsClientKey))
            yield return new ValidationResult("a client certificate needs its key and a key its certificate (ORCH_TLS_CLIENT_CERT, ORCH_TLS_CLIENT_KEY)",
                [string.IsNullOrEmpty(TlsClientCertificate) ? nameof(TlsClientCertificate) : nameof(TlsClientKey)]);
        foreach (var (file, name) in new[] { (TlsCa, nameof(TlsCa)), (TlsClientCertificate, nameof(TlsClientCertificate)), (TlsClientKey, nameof(TlsClientKey)) })
            if (!string.IsNullOrEmpty(file) && !File.Exists(file))
                yield return new ValidationResult($"{file}: no such file", [name]);
        if (MaxBackoff <= TimeSpan.Zero)
            yield return new ValidationResult("must be longer than zero", [nameof(MaxBackoff)]);
        string? devices = null;
        try
        {
            DeviceInventory.Parse(Devices);
        }
        catch (ArgumentException e)
        {
            devices = e.Message;
        }
        if (devices is not null) yield return new ValidationResult(devices, [nameof(Devices)]);
    }
}

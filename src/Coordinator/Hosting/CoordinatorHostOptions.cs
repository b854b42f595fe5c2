using System.ComponentModel.DataAnnotations;
using System.Globalization;
using System.Net;

namespace Orchestrator.Coordinator.Hosting;

/// <summary>Where the coordinator listens (configuration section "Listen").</summary>
public sealed class ListenSettings : IValidatableObject
{
    /// <summary>Address to bind: loopback by default, 0.0.0.0 for every interface (the coordinator program's default, for a pod).</summary>
    [Required]
    public string Address { get; set; } = "127.0.0.1";

    /// <summary>gRPC port (HTTP/2 without TLS): workers and the CLI connect here; 0 picks a free port.</summary>
    [Range(0, 65535, ErrorMessage = "must be a port number from 0 to 65535")]
    public int GrpcPort { get; set; } = 5000;

    /// <summary>HTTP/1.1 port for /healthz, /readyz and /metrics; unset: none.</summary>
    [Range(0, 65535, ErrorMessage = "must be a port number from 0 to 65535")]
    public int? HttpPort { get; set; }

    /// <summary>TCP port of the gradient socket (coordinator aggregation without gRPC framing); 0 picks a free port; "off": none.</summary>
    public string GradientPort { get; set; } = "5002";

    /// <summary>
    /// PEM certificate (chain) of the gRPC and HTTP ports (ORCH_TLS_CERT, --tls-cert; a mounted
    /// Kubernetes TLS secret's tls.crt). With <see cref="TlsKey"/>, both ports serve TLS only; unset: plain text.
    /// </summary>
    public string? TlsCertificate { get; set; }

    /// <summary>PEM private key of <see cref="TlsCertificate"/> (ORCH_TLS_KEY, --tls-key).</summary>
    public string? TlsKey { get; set; }

    /// <summary>
    /// PEM CA of workers' client certificates (ORCH_TLS_CLIENT_CA, --tls-client-ca): mutual TLS for
    /// workers. A worker call then needs a client certificate signed by it; users' calls need none.
    /// </summary>
    public string? TlsClientCa { get; set; }

    /// <summary>Whether the ports serve TLS.</summary>
    public bool Tls => !string.IsNullOrEmpty(TlsCertificate);

    /// <summary>The gradient socket's port, or null when it is off.</summary>
    public int? GradientSocketPort => GradientPort.Trim().Equals("off", StringComparison.OrdinalIgnoreCase)
        ? null
        : int.Parse(GradientPort, NumberStyles.None, CultureInfo.InvariantCulture);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (!IPAddress.TryParse(Address, out _))
            yield return new ValidationResult($"'{Address}' is not an IP address (e.g. 127.0.0.1, or 0.0.0.0 for every interface)", [nameof(Address)]);
        if (string.IsNullOrEmpty(TlsCertificate) != string.IsNullOrEmpty(TlsKey))
            yield return new ValidationResult("TLS needs both a certificate (ORCH_TLS_CERT, --tls-cert) and its key (ORCH_TLS_KEY, --tls-key)",
                [string.IsNullOrEmpty(TlsCertificate) ? nameof(TlsCertificate) : nameof(TlsKey)]);
        if (!string.IsNullOrEmpty(TlsClientCa) && string.IsNullOrEmpty(TlsCertificate))
            yield return new ValidationResult("client certificates need TLS: set the coordinator's certificate and key too", [nameof(TlsClientCa)]);
        foreach (var (file, name) in new[] { (TlsCertificate, nameof(TlsCertificate)), (TlsKey, nameof(TlsKey)), (TlsClientCa, nameof(TlsClientCa)) })
            if (!string.IsNullOrEmpty(file) && !File.Exists(file))
                yield return new ValidationResult($"{file}: no such file", [name]);
        if (!GradientPort.Trim().Equals("off", StringComparison.OrdinalIgnoreCase)
            && !(int.TryParse(GradientPort, NumberStyles.None, CultureInfo.InvariantCulture, out var port) && port <= 65535))
            yield return new ValidationResult($"'{GradientPort}' is neither a port number from 0 to 65535 nor off", [nameof(GradientPort)]);
    }
}

/// <summary>Where the coordinator keeps its state (configuration section "State").</summary>
public sealed class StateSettings
{
    /// <summary>Redis configuration string (host:port,…); unset: the embedded SQLite store under <see cref="Dir"/>.</summary>
    public string? Redis { get; set; }

    /// <summary>Key prefix in Redis, so coordinators (or tests) can share one server.</summary>
    [Required(ErrorMessage = "must not be empty")]
    public string RedisPrefix { get; set; } = "orch";

    /// <summary>Folder of the embedded store and, by default, of checkpoints and packed data sets.</summary>
    [Required(ErrorMessage = "must name a folder")]
    public string Dir { get; set; } = ".orch";

    /// <summary>Checkpoint folder; unset: &lt;Dir&gt;/checkpoints.</summary>
    public string? CheckpointDir { get; set; }

    /// <summary>Whether state lives in Redis.</summary>
    public bool UsesRedis => !string.IsNullOrWhiteSpace(Redis);

    /// <summary>The checkpoint folder in effect.</summary>
    public string CheckpointRoot => string.IsNullOrWhiteSpace(CheckpointDir) ? Path.Combine(Dir, "checkpoints") : CheckpointDir;
}

/// <summary>Data sets the coordinator serves to workers (configuration section "Data").</summary>
public sealed class DataSettings
{
    /// <summary>Searched first for catalog data sets, and the root of imagefolder data (docs/data.md, "Data delivery"); unset: none.</summary>
    public string? Dir { get; set; }
}

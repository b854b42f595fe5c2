namespace Orchestrator.Configuration;

/// <summary>
/// Every <c>ORCH_*</c> environment variable the programs read, in one place. Most are settings:
/// <see cref="Settings"/> maps each to its configuration key, so they reach the programs through
/// the configuration system like appsettings.json and flags do (docs/operations.md). The
/// deployment tests check that the Kubernetes manifests and the Helm chart set no variable
/// outside these lists.
/// </summary>
public static class EnvironmentVariables
{
    /// <summary>Bearer token: the coordinator requires it of every call; workers and the CLI send it.</summary>
    public const string Token = "ORCH_TOKEN";

    /// <summary>Coordinator: PEM certificate of its gRPC and HTTP ports (TLS).</summary>
    public const string TlsCertificate = "ORCH_TLS_CERT";

    /// <summary>Coordinator: PEM private key of <see cref="TlsCertificate"/>.</summary>
    public const string TlsKey = "ORCH_TLS_KEY";

    /// <summary>Coordinator: PEM CA of workers' client certificates (mutual TLS).</summary>
    public const string TlsClientCa = "ORCH_TLS_CLIENT_CA";

    /// <summary>Clients (orch commands, workers): PEM CA to verify the coordinator's certificate against.</summary>
    public const string TlsCa = "ORCH_TLS_CA";

    /// <summary>Worker: PEM client certificate presented to the coordinator (mutual TLS).</summary>
    public const string TlsClientCertificate = "ORCH_TLS_CLIENT_CERT";

    /// <summary>Worker: PEM private key of <see cref="TlsClientCertificate"/>.</summary>
    public const string TlsClientKey = "ORCH_TLS_CLIENT_KEY";

    /// <summary>Coordinator: the token of the worker role (workers then send it as their ORCH_TOKEN).</summary>
    public const string WorkerToken = "ORCH_WORKER_TOKEN";

    /// <summary>Coordinator: the token of the user role (submit, steer and read sweeps).</summary>
    public const string UserToken = "ORCH_USER_TOKEN";

    /// <summary>Coordinator: the token of the read-only viewer role.</summary>
    public const string ViewerToken = "ORCH_VIEWER_TOKEN";
    /// <summary>The coordinator's gRPC address for the CLI and <c>orch worker</c> (<c>http://host:5000</c>).</summary>
    public const string Coordinator = "ORCH_COORDINATOR";
    /// <summary>Host or address that peers use to reach a worker's data port (<c>--advertise-host</c>).</summary>
    public const string AdvertiseHost = "ORCH_ADVERTISE_HOST";
    /// <summary>An installed PyTorch's <c>torch/lib</c>, loaded instead of the bundled CPU libtorch.</summary>
    public const string LibTorchDir = "ORCH_LIBTORCH_DIR";
    /// <summary>Folder searched first for data sets.</summary>
    public const string DataDir = "ORCH_DATA_DIR";
    /// <summary>A server holding data set files, for machines without internet access.</summary>
    public const string DatasetMirror = "ORCH_DATASET_MIRROR";
    /// <summary>A TrueType font file for the text of plots (<c>orch lr-find</c>), where the usual system fonts are missing.</summary>
    public const string PlotFont = "ORCH_PLOT_FONT";
    /// <summary>Coordinator and worker: <c>simple</c> (one line per entry, for people) or <c>json</c> (JSON lines, for log collectors).</summary>
    public const string LogFormat = "ORCH_LOG_FORMAT";

    /// <summary>Coordinator program: Redis <c>host:port</c> (unset: the embedded SQLite store).</summary>
    public const string Redis = "ORCH_REDIS";
    /// <summary>Coordinator program: folder of the embedded store.</summary>
    public const string StateDir = "ORCH_STATE_DIR";
    /// <summary>Coordinator program: folder of checkpoints.</summary>
    public const string CheckpointDir = "ORCH_CHECKPOINT_DIR";
    /// <summary>Coordinator program: gRPC port (5000).</summary>
    public const string GrpcPort = "ORCH_GRPC_PORT";
    /// <summary>Coordinator program: HTTP/1.1 port for /healthz, /readyz and /metrics (5001).</summary>
    public const string HttpPort = "ORCH_HTTP_PORT";
    /// <summary>Coordinator program: gradient socket port (5002; <c>off</c>: gradients ride the gRPC port).</summary>
    public const string GradientPort = "ORCH_GRADIENT_PORT";
    /// <summary>Coordinator program: address to listen on (0.0.0.0).</summary>
    public const string Bind = "ORCH_BIND";

    /// <summary>What the coordinator (its program and <c>orch coordinator</c>) reads: its settings, and the data set mirror.</summary>
    public static readonly IReadOnlyList<string> ReadByCoordinator =
        [.. Settings.Variables(Settings.Coordinator), DatasetMirror];

    /// <summary>What <c>orch worker</c> reads (the worker images' entry point is <c>orch</c>): its settings, and where data sets are found.</summary>
    public static readonly IReadOnlyList<string> ReadByWorker =
        [.. Settings.Variables(Settings.Worker), DataDir, DatasetMirror];
}

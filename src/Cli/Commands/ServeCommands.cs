using System.CommandLine;
using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orchestrator.Configuration;
using Orchestrator.Coordinator.Hosting;
using Orchestrator.Worker.Host;

namespace Orchestrator.Cli.Commands;

/// <summary>`orch coordinator` and `orch worker`: the two long-running services.</summary>
internal static class ServeCommands
{
    public static Command Coordinator()
    {
        var redis = new Option<string?>("--redis") { Description = "Keep state in Redis at HOST:PORT (default: an embedded SQLite store under --state-dir). Also: ORCH_REDIS.", HelpName = "HOST:PORT" };
        var redisPrefix = new Option<string>("--redis-prefix") { Description = "Key prefix in Redis.", DefaultValueFactory = _ => "orch" };
        var stateDir = new Option<string>("--state-dir") { Description = "Folder for the embedded store and checkpoints. Also: ORCH_STATE_DIR.", DefaultValueFactory = _ => ".orch", HelpName = "DIR" };
        var checkpointDir = new Option<string?>("--checkpoint-dir") { Description = "Folder for checkpoints (default: <state-dir>/checkpoints). Also: ORCH_CHECKPOINT_DIR.", HelpName = "DIR" };
        var bind = new Option<string>("--bind") { Description = "Address to listen on (0.0.0.0 for all interfaces). Also: ORCH_BIND.", DefaultValueFactory = _ => "127.0.0.1", HelpName = "ADDRESS" };
        var port = new Option<int>("--port") { Description = "gRPC port (workers and the CLI connect here). Also: ORCH_GRPC_PORT.", DefaultValueFactory = _ => 5000 };
        var httpPort = new Option<int?>("--http-port") { Description = "HTTP port (HTTP/1.1) for /healthz (liveness), /readyz (ready when the state store answers) and /metrics. Also: ORCH_HTTP_PORT.", HelpName = "PORT" };
        var dataDir = new Option<string?>("--data-dir") { Description = "Serve data sets to workers from this folder: catalog data sets (searched before the cache and /usr/share/datasets) and imagefolder data (data.dir relative to it).", HelpName = "DIR" };
        var gradientPort = new Option<int>("--gradient-port") { Description = "TCP port of the gradient socket: data-parallel trials with aggregation: coordinator send gradients here, without gRPC framing (0: a free port).", DefaultValueFactory = _ => 5002, HelpName = "PORT" };
        var gradientSocket = new Option<bool>("--gradient-socket") { Description = "Open the gradient socket (false: coordinator-mode trials send gradients over the gRPC port instead, slower; for networks that only pass --port).", DefaultValueFactory = _ => true, HelpName = "true|false" };
        var leaseTimeout = new Option<double>("--lease-timeout") { Description = "Seconds without a heartbeat before a worker's trials are re-queued.", DefaultValueFactory = _ => 10 };
        var tlsCert = new Option<string?>("--tls-cert") { Description = "Serve TLS on --port and --http-port with this PEM certificate (chain), e.g. a mounted Kubernetes TLS secret's tls.crt. Also: ORCH_TLS_CERT.", HelpName = "FILE" };
        var tlsKey = new Option<string?>("--tls-key") { Description = "The PEM private key of --tls-cert. Also: ORCH_TLS_KEY.", HelpName = "FILE" };
        var tlsClientCa = new Option<string?>("--tls-client-ca") { Description = "Mutual TLS for workers: they must present a client certificate signed by this PEM CA. Also: ORCH_TLS_CLIENT_CA.", HelpName = "FILE" };
        var command = new Command("coordinator", "Run the coordinator: accepts sweeps, schedules trials on workers, keeps state (Redis or embedded).\n" +
            "Settings also come from appsettings.json and ORCH_* variables; flags win (docs/operations.md).\nExample: orch coordinator --redis 127.0.0.1:6379")
        { redis, redisPrefix, stateDir, checkpointDir, bind, port, httpPort, gradientPort, gradientSocket, leaseTimeout, dataDir, tlsCert, tlsKey, tlsClientCa, ConfigurationFlags.LogFormat() };
        command.SetAction(async (parse, ct) =>
        {
            var flags = ConfigurationFlags.Given(parse, Settings.Coordinator, command);
            if (parse.GetResult(leaseTimeout) is { Implicit: false })
            {
                var lease = TimeSpan.FromSeconds(parse.GetValue(leaseTimeout));
                if (lease < TimeSpan.FromSeconds(1)) throw new ArgumentException("--lease-timeout must be at least 1 second");
                flags["Coordinator:LeaseTimeout"] = lease.ToString("c", CultureInfo.InvariantCulture);
                flags["Coordinator:HeartbeatInterval"] = TimeSpan.FromTicks(Math.Max(TimeSpan.FromMilliseconds(200).Ticks, lease.Ticks / 5)).ToString("c", CultureInfo.InvariantCulture);
            }
            if (parse.GetResult(gradientSocket) is { Implicit: false } && !parse.GetValue(gradientSocket)) flags["Listen:GradientPort"] = "off";
            await using var app = CoordinatorHost.Build([], flags: flags);
            await app.StartAsync(ct);
            var listen = app.Services.GetRequiredService<IOptions<ListenSettings>>().Value;
            var state = app.Services.GetRequiredService<IOptions<StateSettings>>().Value;
            var socket = app.Services.GetRequiredService<Orchestrator.Coordinator.Aggregation.GradientSocketEndpoint>().Port;
            await Console.Error.WriteLineAsync($"coordinator listening on {listen.Address}:{listen.GrpcPort}" +
                (socket is { } sp ? $", gradient socket on port {sp}" : "") +
                $" (state: {(state.UsesRedis ? state.Redis : state.Dir)})");
            await app.WaitForShutdownAsync(ct);
            return ExitCodes.Ok;
        });
        return command;
    }

    public static Command Worker()
    {
        var coordinator = new Option<string>("--coordinator") { Description = "The coordinator's address. Also: ORCH_COORDINATOR.", DefaultValueFactory = _ => Remote.CoordinatorConnection.DefaultAddress, HelpName = "URL" };
        var id = new Option<string?>("--id") { Description = "Stable worker id (default: host name and process id).", HelpName = "ID" };
        var device = CommonOptions.Device();
        var devices = new Option<string?>("--devices")
        {
            Description = "GPUs to offer the coordinator, one trial (or data-parallel rank) at a time on each: auto (detect: what --device trains on, " +
                          "names and memory from the NVIDIA driver), cpu (none: CPU trials only, one at a time), cuda:N (GPUs 0..N-1), or " +
                          "cuda:N:NAME[:MEMORY] to state them, e.g. cuda:8:H200:141GB (memory in B, KB, MB, GB, TB, KiB, MiB, GiB or TiB). " +
                          "Each trial trains on its slot's GPU (cuda:i), except with --device cpu, which trains every trial on the CPU.",
            HelpName = "auto|cpu|cuda:N[:NAME[:MEMORY]]",
        };
        var dataDir = new Option<string?>("--data-dir") { Description = "Read data sets from this folder for every trial (a shared volume).", HelpName = "DIR" };
        var fetchData = new Option<bool?>("--fetch-data") { Description = "Fetch each trial's data set from the coordinator into <work-dir>/datasets (default: on unless --data-dir is given; false resolves data sets on this machine).", HelpName = "true|false" };
        var workDir = new Option<string?>("--work-dir") { Description = "Scratch folder for trial runs.", HelpName = "DIR" };
        var threads = new Option<int?>("--threads") { Description = "libtorch CPU threads (default: all cores).", HelpName = "N" };
        var libTorch = CommonOptions.LibTorchDir();
        var metricsPort = new Option<int?>("--metrics-port") { Description = "Serve Prometheus metrics at http://<host>:PORT/metrics (throughput, step time, data wait, GPU memory), and the probes /healthz (alive) and /readyz (connected, not draining).", HelpName = "PORT" };
        var dataPort = new Option<int>("--data-port") { Description = "Port for exchanging gradients with peers in data-parallel trials (default: a free port). With several GPUs, GPU i uses PORT + i.", HelpName = "PORT" };
        var advertise = new Option<string?>("--advertise-host") { Description = "Host or address peers use to reach --data-port (a pod IP on Kubernetes; default: 127.0.0.1 for a loopback coordinator, else the host name). Workers that advertise the same host are taken to share a machine and exchange gradients over Unix sockets: give each machine, container or network namespace its own. Also: ORCH_ADVERTISE_HOST.", HelpName = "HOST" };
        var metricsBind = new Option<string>("--metrics-bind") { Description = "Address for --metrics-port (0.0.0.0 in a pod).", DefaultValueFactory = _ => "127.0.0.1", HelpName = "ADDRESS" };
        var metricsTlsCert = new Option<string?>("--metrics-tls-cert") { Description = "Serve --metrics-port over HTTPS only, with this PEM certificate (and --metrics-tls-key), e.g. a mounted Kubernetes TLS secret's tls.crt.", HelpName = "FILE" };
        var metricsTlsKey = new Option<string?>("--metrics-tls-key") { Description = "The PEM private key of --metrics-tls-cert.", HelpName = "FILE" };
        var tlsCa = new Option<string?>("--tls-ca") { Description = "Verify the coordinator's TLS certificate (an https:// --coordinator) against this PEM CA instead of the system's. Also: ORCH_TLS_CA.", HelpName = "FILE" };
        var tlsClientCert = new Option<string?>("--tls-client-cert") { Description = "Present this PEM client certificate to the coordinator (mutual TLS). Also: ORCH_TLS_CLIENT_CERT.", HelpName = "FILE" };
        var tlsClientKey = new Option<string?>("--tls-client-key") { Description = "The PEM private key of --tls-client-cert. Also: ORCH_TLS_CLIENT_KEY.", HelpName = "FILE" };
        var drainTimeout = new Option<int>("--drain-timeout")
        {
            Description = "On SIGTERM or Ctrl+C, take no new trials, let each running trial finish its epoch and upload that checkpoint, " +
                          "then hand it back to be resumed elsewhere; stop at once after this many seconds or on a second signal. " +
                          "Keep it below the pod's terminationGracePeriodSeconds. 0: stop at once (the epoch in progress is lost).",
            DefaultValueFactory = _ => 600,
            HelpName = "SECONDS",
        };
        var command = new SignalHandlingCommand("worker", "Run a worker: connects to the coordinator, trains the trials it is given, reconnects on its own.\n" +
            "SIGTERM or Ctrl+C drains it (see --drain-timeout); a second signal stops it at once.\n" +
            "Settings also come from appsettings.json and ORCH_* variables; flags win (docs/operations.md).\nExample: orch worker --coordinator http://127.0.0.1:5000")
        { coordinator, id, device, devices, dataDir, fetchData, workDir, threads, libTorch, metricsPort, metricsBind, metricsTlsCert, metricsTlsKey, dataPort, advertise, drainTimeout, tlsCa, tlsClientCert, tlsClientKey, ConfigurationFlags.LogFormat() };
        command.SetAction(async (parse, ct) =>
        {
            // Flags over environment variables over appsettings.json over defaults; a bad value fails here, in one line, before connecting.
            var configuration = WorkerConfiguration.Build(ConfigurationFlags.Given(parse, Settings.Worker, command));
            var (options, service) = WorkerConfiguration.Bind(configuration);
            using var loggers = LoggerFactory.Create(b => b.AddConsoleLogs(configuration, Settings.Worker));
            await using var agent = new WorkerAgent(options, loggers);
            await using var telemetry = service.MetricsPort is { } mp ? await WorkerTelemetry.StartAsync(mp, service.MetricsBind, () => agent.IsReady, ct,
                    service.MetricsTlsCertificate is { } cert ? (cert, service.MetricsTlsKey!) : null) : null;
            using var signals = ShutdownSignals.Register(agent, TimeSpan.FromSeconds(service.DrainTimeout));
            await agent.RunAsync(ct);
            return signals.ExitCode;
        });
        return command;
    }
}

/// <summary>
/// A command that handles SIGTERM and SIGINT itself, so System.CommandLine must not (it would
/// cancel the action's token and end the process two seconds later): `orch worker` drains for
/// up to --drain-timeout seconds.
/// </summary>
internal sealed class SignalHandlingCommand(string name, string? description = null) : Command(name, description);

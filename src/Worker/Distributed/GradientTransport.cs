using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace Orchestrator.Worker.Distributed;

/// <summary>How the gradients of a data-parallel trial are averaged (the sweep's <c>resources.aggregation</c>).</summary>
public enum AggregationMode
{
    /// <summary>Among the ranks themselves: reduce-scatter and all-gather over direct sockets.</summary>
    Ring,
    /// <summary>By the coordinator: each rank sends its gradients there and gets the mean back.</summary>
    Coordinator,
}

/// <summary>
/// Where one rank of a data-parallel trial exchanges its gradients, as its assignment says (plain
/// values: the worker host maps the protocol's assignment onto this).
/// </summary>
public sealed record GradientTransportRequest
{
    public required string TrialId { get; init; }
    public required long FencingToken { get; init; }
    public required int Rank { get; init; }
    public required int WorldSize { get; init; }
    public AggregationMode Mode { get; init; }
    public WireFormat Wire { get; init; }
    /// <summary>Ring: every rank's "host:port", by rank.</summary>
    public IReadOnlyList<string> PeerEndpoints { get; init; } = [];
    /// <summary>Ring: the secret the assignment gave every rank; neighbours prove they hold it.</summary>
    public byte[] RingSecret { get; init; } = [];
    /// <summary>Coordinator mode: the coordinator's Unix socket, usable when this worker runs on its machine ("" when none).</summary>
    public string CoordinatorSocketPath { get; init; } = "";
    /// <summary>Coordinator mode: the coordinator's TCP gradient socket, "host:port" or ":port" ("" when it is off).</summary>
    public string CoordinatorSocketEndpoint { get; init; } = "";
    /// <summary>The coordinator's gRPC address (the fallback data plane, and the host of a ":port" endpoint).</summary>
    public required Uri Coordinator { get; init; }
    /// <summary>Headers of calls to the coordinator (its bearer token).</summary>
    public Metadata? Headers { get; init; }
    /// <summary>TLS toward the coordinator (an https:// address): for its gRPC stream and its TCP gradient socket. Null: plain text.</summary>
    public System.Net.Security.SslClientAuthenticationOptions? Tls { get; init; }
}

/// <summary>
/// Chooses and connects the fastest gradient transport a rank can use (bench/README.md (e)):
/// for the ring, Unix sockets when every rank is on this host, else TCP; for coordinator
/// aggregation, shared memory through the coordinator's Unix socket on its own machine, else its
/// TCP gradient socket, else (the socket turned off) the gRPC stream. Every rank of a trial calls
/// this at the same time.
/// </summary>
public static partial class GradientTransport
{
    /// <summary>Connects this rank; dispose the result at the end of the trial.</summary>
    public static Task<IAllReduce> ConnectAsync(GradientTransportRequest request, ILogger logger, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(request);
        return request.Mode == AggregationMode.Coordinator ? ConnectCoordinatorAsync(request, logger, ct) : ConnectRingAsync(request, ct);
    }

    private static async Task<IAllReduce> ConnectCoordinatorAsync(GradientTransportRequest request, ILogger logger, CancellationToken ct)
    {
        var options = new CoordinatorAllReduceOptions
        {
            TrialId = request.TrialId,
            FencingToken = request.FencingToken,
            Rank = request.Rank,
            WorldSize = request.WorldSize,
            Headers = request.Headers,
            Wire = request.Wire,
            Tls = request.Tls,
        };
        if (request.CoordinatorSocketPath.Length > 0 && File.Exists(request.CoordinatorSocketPath))
        {
            // On the coordinator's machine: its Unix socket (faster than loopback TCP), with shared memory where granted.
            try
            {
                var local = await CoordinatorSocketAllReduce.ConnectUnixAsync(options, request.CoordinatorSocketPath, ct).ConfigureAwait(false);
                Log.Plane(logger, request.TrialId, local.SharedMemory ? "shared memory" : "the coordinator's Unix socket");
                return local;
            }
            catch (CollectiveException e) when (e.InnerException is SocketException)
            {
                // Nothing listens there (a stale file): TCP below.
            }
        }
        if (request.CoordinatorSocketEndpoint.Length > 0)
        {
            var (host, port) = CoordinatorSocketAllReduce.ResolveEndpoint(request.CoordinatorSocketEndpoint, request.Coordinator);
            var tcp = await CoordinatorSocketAllReduce.ConnectAsync(options, host, port, ct).ConfigureAwait(false);
            Log.Plane(logger, request.TrialId, $"TCP to {host}:{port}");
            return tcp;
        }
        var stream = await CoordinatorAllReduce.ConnectAsync(options, request.Coordinator, ct).ConfigureAwait(false);
        Log.Plane(logger, request.TrialId, "the gRPC stream");
        return stream;
    }

    private static async Task<IAllReduce> ConnectRingAsync(GradientTransportRequest request, CancellationToken ct)
    {
        var endpoints = request.PeerEndpoints.Select(RingEndpoint.Parse).ToList();
        if (endpoints.Count != request.WorldSize)
            throw new InvalidOperationException($"assignment lists {endpoints.Count} peer endpoints for world size {request.WorldSize}");
        if (endpoints.All(e => e.Host == endpoints[0].Host))
        {
            // Every rank on one host: Unix domain sockets (measured faster than loopback TCP,
            // bench/README.md). Paths derive from the lease, so every rank computes the same ones.
            var local = new RingAllReduceOptions { Rank = request.Rank, Endpoints = UnixEndpoints(request), Wire = request.Wire, Secret = request.RingSecret };
            return await RingAllReduce.ConnectAsync(local, ct).ConfigureAwait(false);
        }
        var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        // The port is reused trial after trial; connections of the last ring may still be in TIME_WAIT.
        listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        // This rank's own endpoint: with several GPUs, each rank of a worker listens on its GPU's port.
        listener.Bind(new IPEndPoint(IPAddress.Any, endpoints[request.Rank].Port));
        listener.Listen(8);
        var tcp = new RingAllReduceOptions { Rank = request.Rank, Endpoints = endpoints, Wire = request.Wire, Secret = request.RingSecret };
        return await RingAllReduce.ConnectAsync(tcp, listener, ct).ConfigureAwait(false);
    }

    /// <summary>One Unix socket per rank, named after the lease (short names: a socket path is limited to 107 bytes).</summary>
    internal static List<RingEndpoint> UnixEndpoints(GradientTransportRequest request)
    {
        var key = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes($"{request.TrialId}/{request.FencingToken}")))[..16];
        return Enumerable.Range(0, request.WorldSize)
            .Select(r => RingEndpoint.Unix(Path.Combine(Path.GetTempPath(), $"orch-{key}-{r}.sock")))
            .ToList();
    }

    private static partial class Log
    {
        [LoggerMessage(120, LogLevel.Information, "Trial {TrialId}: gradients averaged by the coordinator over {Plane}")]
        public static partial void Plane(ILogger logger, string trialId, string plane);
    }
}

using Grpc.Core;
using Grpc.Net.Client;
using Orchestrator.Protocol.V1;

namespace Orchestrator.Cli.Remote;

/// <summary>A client of the coordinator's user API, with a deadline on every call.</summary>
internal sealed class CoordinatorConnection : IDisposable
{
    public const string AddressVariable = Orchestrator.Configuration.EnvironmentVariables.Coordinator;
    public const string DefaultAddress = "http://127.0.0.1:5000";
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(30);
    private readonly GrpcChannel _channel;

    public CoordinatorConnection(string? address)
    {
        Address = address ?? Environment.GetEnvironmentVariable(AddressVariable) ?? DefaultAddress;
        if (!Uri.TryCreate(Address, UriKind.Absolute, out var uri) || (uri.Scheme != "http" && uri.Scheme != "https"))
            throw new ArgumentException($"--coordinator {Address}: expected a URL such as {DefaultAddress}");
        _channel = GrpcChannel.ForAddress(uri, new GrpcChannelOptions
        {
            MaxReceiveMessageSize = 16 * 1024 * 1024,
            // An https:// coordinator with a private CA: ORCH_TLS_CA names it.
            HttpHandler = Orchestrator.Configuration.TlsFiles.ClientHandler(Environment.GetEnvironmentVariable(Orchestrator.Configuration.EnvironmentVariables.TlsCa), null, null),
        });
        Client = new Protocol.V1.Sweeps.SweepsClient(_channel);
        Plugins = new Protocol.V1.Plugins.PluginsClient(_channel);
    }

    public string Address { get; }

    public Protocol.V1.Sweeps.SweepsClient Client { get; }

    /// <summary>Uploads plug-in files (orch submit).</summary>
    public Protocol.V1.Plugins.PluginsClient Plugins { get; }

    public Metadata Headers => Environment.GetEnvironmentVariable(Orchestrator.Configuration.EnvironmentVariables.Token) is { Length: > 0 } t
        ? new Metadata { { "authorization", "Bearer " + t } }
        : [];

    /// <summary>Options for a unary call: headers, a deadline, cancellation.</summary>
    public CallOptions Call(CancellationToken ct) => new(Headers, DateTime.UtcNow + CallTimeout, ct);

    /// <summary>Options for a long stream (watch, download): headers and cancellation, no deadline.</summary>
    public CallOptions Stream(CancellationToken ct) => new(Headers, cancellationToken: ct);

    public void Dispose() => _channel.Dispose();
}

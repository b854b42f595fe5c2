using System.Net;
using System.Net.Sockets;
using Grpc.Health.V1;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Orchestrator.Coordinator.Hosting;
using Orchestrator.Deployment.UnitTests.Rendering;
using Orchestrator.TestSupport;
using Orchestrator.Worker.Host;

namespace Orchestrator.Deployment.UnitTests;

/// <summary>
/// The probes of the rendered pods (HTTP paths, the gRPC health service), asked of the real
/// coordinator host and worker telemetry endpoint in this process (the container tests ask the same of the images).
/// </summary>
public sealed class ProbeEndpointTests
{
    [Fact]
    public async Task Coordinator_answers_its_probes_on_the_grpc_and_http_ports()
    {
        var container = Render.Get(Render.Manifests).Container("coordinator");
        var state = Directory.CreateTempSubdirectory("orch-probe-");
        try
        {
            var port = FreePort();
            await using var app = CoordinatorHost.Build(new CoordinatorHostSettings
            {
                GrpcPort = 0,
                HttpPort = port,
                GradientPort = null,
                StateDir = state.FullName,
                LogLevel = LogLevel.Warning,
            });
            await app.StartAsync().DefaultTimeout();
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
            // The embedded store answers: ready (the gRPC health service, as the probe asks it) and alive.
            using var channel = GrpcChannel.ForAddress(GrpcAddress(app, port));
            var health = new Health.HealthClient(channel);
            var ready = await health.CheckAsync(new HealthCheckRequest { Service = container.ReadinessProbe.Grpc.Service }).ResponseAsync.DefaultTimeout();
            Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, ready.Status);
            Assert.Equal(HttpStatusCode.OK, await Status(http, container.LivenessProbe.HttpGet.Path));
            Assert.Equal(HttpStatusCode.OK, await Status(http, "/readyz"));
            Assert.Equal(HttpStatusCode.NotFound, await Status(http, "/ready"));
            await app.StopAsync().DefaultTimeout();
        }
        finally
        {
            state.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task Worker_is_alive_at_once_and_ready_only_when_connected()
    {
        var container = Render.Get(Render.Manifests).Container("worker");
        var connected = false;
        var port = FreePort();
        await using var telemetry = await WorkerTelemetry.StartAsync(port, "127.0.0.1", () => connected, CancellationToken.None).DefaultTimeout();
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
        Assert.Equal(HttpStatusCode.OK, await Status(http, container.LivenessProbe.HttpGet.Path));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, await Status(http, container.ReadinessProbe.HttpGet.Path));
        connected = true;
        Assert.Equal(HttpStatusCode.OK, await Status(http, container.ReadinessProbe.HttpGet.Path));
    }

    [Fact]
    public async Task Worker_metrics_port_with_a_certificate_serves_https_only()
    {
        var dir = Directory.CreateTempSubdirectory("orch-metrics-tls-");
        try
        {
            using var ca = new TestCa(dir.FullName, "orch");
            var port = FreePort();
            await using var telemetry = await WorkerTelemetry.StartAsync(port, "127.0.0.1", () => true, CancellationToken.None, ca.Issue("worker-metrics", server: true)).DefaultTimeout();
            using var handler = new SocketsHttpHandler
            {
                SslOptions = Orchestrator.Configuration.TlsFiles.ClientAuthentication(ca.CaFile, null, null)!,
            };
            using (var https = new HttpClient(handler) { BaseAddress = new Uri($"https://127.0.0.1:{port}") })
            {
                Assert.Equal(HttpStatusCode.OK, await Status(https, "/healthz"));
                using var metrics = await https.GetAsync("/metrics").DefaultTimeout();
                Assert.Contains("process_", await metrics.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            }
            // Plain HTTP to the TLS port gets no answer.
            using var plain = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
            var refused = await Record.ExceptionAsync(() => plain.GetAsync("/healthz").DefaultTimeout());
            Assert.IsType<HttpRequestException>(refused);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    private static async Task<HttpStatusCode> Status(HttpClient http, string path)
    {
        using var response = await http.GetAsync(path).DefaultTimeout();
        return response.StatusCode;
    }

    /// <summary>The gRPC listener's address (the coordinator's other listener is the HTTP port).</summary>
    private static Uri GrpcAddress(Microsoft.AspNetCore.Builder.WebApplication app, int httpPort) =>
        app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses
            .Select(a => new Uri(a)).Single(a => a.Port != httpPort);

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}

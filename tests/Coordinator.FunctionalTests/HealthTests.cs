using System.Net;
using Grpc.Core;
using Grpc.Health.V1;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Orchestrator.Coordinator.Hosting;
using Orchestrator.TestSupport;
using ServingStatus = Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus;

namespace Orchestrator.Coordinator.FunctionalTests;

/// <summary>
/// The coordinator's health over HTTP (/healthz, /readyz) and gRPC (grpc.health.v1) while its
/// real redis-server is killed and started again on the same port and data folder.
/// </summary>
public sealed class HealthTests
{
    [Fact]
    public async Task Readiness_and_grpc_health_go_down_while_Redis_is_down_and_come_back_with_it_while_liveness_holds()
    {
        await using var redis = await RedisServer.StartAsync(CancellationToken.None).DefaultTimeout();
        var state = Directory.CreateTempSubdirectory("orch-health-");
        var httpPort = RedisServer.FreePort();
        try
        {
            await using var app = CoordinatorHost.Build(new CoordinatorHostSettings
            {
                GrpcPort = 0,
                HttpPort = httpPort,
                GradientPort = null,
                StateDir = state.FullName,
                Redis = redis.Configuration,
                RedisPrefix = $"health:{Guid.NewGuid():N}:",
                LogLevel = LogLevel.Warning,
                // A token protects the API, never the health service: a Kubernetes gRPC probe sends none.
                Configure = o => o.AuthToken = "secret",
            });
            await app.StartAsync().DefaultTimeout();
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{httpPort}") };
            using var channel = GrpcChannel.ForAddress(GrpcAddress(app, httpPort));
            var health = new Health.HealthClient(channel);

            await ExpectAsync(http, health, ready: true);

            await redis.KillAsync(CancellationToken.None).DefaultTimeout();
            await ExpectAsync(http, health, ready: false);

            await redis.RestartAsync(CancellationToken.None).DefaultTimeout();
            await ExpectAsync(http, health, ready: true);

            // An unknown service name is NOT_FOUND, as the protocol says.
            var unknown = await Assert.ThrowsAsync<RpcException>(() => health.CheckAsync(new HealthCheckRequest { Service = "nope" }).ResponseAsync.DefaultTimeout());
            Assert.Equal(StatusCode.NotFound, unknown.StatusCode);
            await app.StopAsync().DefaultTimeout();
        }
        finally
        {
            state.Delete(recursive: true);
        }
    }

    /// <summary>
    /// Waits (bounded) until readiness says <paramref name="ready"/> on both protocols, then checks
    /// that liveness held: a coordinator whose Redis is down is alive, restarting it would not help.
    /// </summary>
    private static async Task ExpectAsync(HttpClient http, Health.HealthClient health, bool ready)
    {
        var expectedHttp = ready ? HttpStatusCode.OK : HttpStatusCode.ServiceUnavailable;
        var expectedGrpc = ready ? ServingStatus.Serving : ServingStatus.NotServing;
        var deadline = DateTime.UtcNow + TaskTimeoutExtensions.Timeout;
        while (true)
        {
            var readyz = await StatusAsync(http, "/readyz");
            var overall = await GrpcStatusAsync(health, "");
            var readiness = await GrpcStatusAsync(health, HealthEndpoints.ReadinessService);
            if (readyz == expectedHttp && overall == expectedGrpc && readiness == expectedGrpc) break;
            if (DateTime.UtcNow > deadline)
                Assert.Fail($"expected ready={ready}; /readyz answered {readyz}, grpc health \"\" {overall}, \"{HealthEndpoints.ReadinessService}\" {readiness}");
            await Task.Delay(100);
        }
        Assert.Equal(HttpStatusCode.OK, await StatusAsync(http, "/healthz"));
        Assert.Equal(ServingStatus.Serving, await GrpcStatusAsync(health, HealthEndpoints.LivenessService));
    }

    private static async Task<HttpStatusCode> StatusAsync(HttpClient http, string path)
    {
        using var response = await http.GetAsync(path).DefaultTimeout();
        return response.StatusCode;
    }

    private static async Task<ServingStatus> GrpcStatusAsync(Health.HealthClient health, string service) =>
        (await health.CheckAsync(new HealthCheckRequest { Service = service }, deadline: DateTime.UtcNow.AddSeconds(10)).ResponseAsync.DefaultTimeout()).Status;

    /// <summary>The gRPC listener's address: the one that is not the HTTP port.</summary>
    private static Uri GrpcAddress(WebApplication app, int httpPort) =>
        app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses
            .Select(a => new Uri(a)).Single(a => a.Port != httpPort);
}

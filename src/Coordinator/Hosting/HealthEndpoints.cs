using Grpc.AspNetCore.HealthChecks;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Orchestrator.Coordinator.Hosting;

/// <summary>
/// The coordinator's health, one set of checks served two ways: HTTP <c>/healthz</c> (liveness)
/// and <c>/readyz</c> (readiness) on the HTTP port for Kubernetes probes and people, and the
/// standard gRPC health service (<c>grpc.health.v1.Health</c>) on the gRPC port for gRPC probes,
/// load balancers and clients. Liveness means the process serves requests; readiness adds that
/// its state store answers (<see cref="StateStoreHealthCheck"/>), so while Redis is down the
/// coordinator is alive but not ready, and the gRPC service reports NOT_SERVING.
/// </summary>
public static class HealthEndpoints
{
    /// <summary>The gRPC health service name that asks for readiness (the empty name asks the same).</summary>
    public const string ReadinessService = "readiness";

    /// <summary>The gRPC health service name that asks for liveness only (never the store).</summary>
    public const string LivenessService = "liveness";

    /// <summary>Registers the checks and the gRPC health service over them.</summary>
    public static IServiceCollection AddCoordinatorHealth(this IServiceCollection services)
    {
        services.AddHealthChecks()
            // Answering at all is liveness; the gRPC service needs a check to say SERVING rather than UNKNOWN.
            .AddCheck("process", () => HealthCheckResult.Healthy())
            .AddCheck<StateStoreHealthCheck>("state-store", tags: [StateStoreHealthCheck.ReadinessTag]);
        services.AddGrpcHealthChecks(o =>
        {
            o.Services.Clear();
            o.Services.Map("", _ => true);
            o.Services.Map(ReadinessService, _ => true);
            o.Services.Map(LivenessService, c => IsLiveness(c.Tags));
        });
        return services;
    }

    /// <summary>Maps <c>/healthz</c>, <c>/readyz</c> and <c>grpc.health.v1.Health</c>.</summary>
    public static IEndpointRouteBuilder MapCoordinatorHealth(this IEndpointRouteBuilder app)
    {
        app.MapHealthChecks("/healthz", new HealthCheckOptions { Predicate = c => IsLiveness(c.Tags) });
        app.MapHealthChecks("/readyz");
        app.MapGrpcHealthChecksService();
        return app;
    }

    private static bool IsLiveness(IEnumerable<string> tags) => !tags.Contains(StateStoreHealthCheck.ReadinessTag);
}

using Microsoft.Extensions.DependencyInjection.Extensions;
using Orchestrator.Coordinator.Aggregation;

namespace Orchestrator.Coordinator.Grpc.Gradients;

/// <summary>Registers the <c>coordinator</c> aggregation mode.</summary>
public static class GradientAggregationServiceCollectionExtensions
{
    /// <summary>
    /// Adds the session registry, its options (section "GradientAggregation") and the lease check
    /// against the state store, and the gradient socket (listening when
    /// <see cref="GradientAggregationOptions.SocketPort"/> is set); a host without sweeps (the
    /// benchmark) registers its own <see cref="ITrialLeaseCheck"/> first. Map
    /// <see cref="GradientExchangeService"/> next to it.
    /// </summary>
    public static IServiceCollection AddGradientAggregation(this IServiceCollection services)
    {
        services.AddOptions<GradientAggregationOptions>().BindConfiguration("GradientAggregation");
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<ITrialLeaseCheck, StoreLeaseCheck>();
        services.TryAddSingleton<GradientExchangeMetrics>();
        services.TryAddSingleton<AggregationSessions>();
        services.TryAddSingleton<GradientSocketEndpoint>();
        services.TryAddSingleton<GradientSocketServer>();
        services.AddHostedService(sp => sp.GetRequiredService<GradientSocketServer>());
        return services;
    }
}

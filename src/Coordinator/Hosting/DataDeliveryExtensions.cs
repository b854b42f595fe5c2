using Orchestrator.Coordinator.Data;

namespace Orchestrator.Coordinator.Hosting;

/// <summary>Wiring of data delivery into the coordinator host.</summary>
public static class DataDeliveryExtensions
{
    /// <summary>Registers <see cref="DatasetServer"/>; <paramref name="configure"/> says where it finds data sets.</summary>
    public static IServiceCollection AddDataDelivery(this IServiceCollection services, Action<DatasetServerOptions, IServiceProvider> configure)
    {
        services.AddOptions<DatasetServerOptions>().Configure<IServiceProvider>(configure);
        services.AddSingleton<DatasetServer>();
        return services;
    }
}

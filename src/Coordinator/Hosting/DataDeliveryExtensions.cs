using Orchestrator.Coordinator.Data;

namespace Orchestrator.Coordinator.Hosting;

/// <summary>Wiring of data delivery into the coordinator host.</summary>
public static class DataDeliveryExtensions
{
    /// <summary>Registers <see cref="DatasetServer"/> with --data-dir and the pack folder taken from <paramref name="settings"/>.</summary>
    public static IServiceCollection AddDataDelivery(this IServiceCollection services, CoordinatorHostSettings settings)
    {
        ArgumentNullException.ThrowIfNull(settings);
        services.AddOptions<DatasetServerOptions>().Configure(o =>
        {
            o.DataDir = settings.DataDir;
            o.PackRoot = Path.Combine(settings.StateDir, "data", "packed");
        });
        services.AddSingleton<DatasetServer>();
        return services;
    }
}

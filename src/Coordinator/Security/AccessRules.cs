using Proto = Orchestrator.Protocol.V1;

namespace Orchestrator.Coordinator.Security;

/// <summary>
/// The role each gRPC method needs, in one table: the Sweeps service reads for viewers and
/// changes sweeps for users; the worker services (worker stream, checkpoints, data, gradient
/// exchange, plug-in downloads) are for workers, and only users upload plug-in code; health checks are open to probes. A method of any other service
/// needs every role (the coordinator's own token), so nothing new is open by omission.
/// </summary>
public static class AccessRules
{
    /// <summary>The gRPC health service (grpc.health.v1): open, for Kubernetes probes and load balancers.</summary>
    public const string HealthService = "grpc.health.v1.Health";

    private static readonly Dictionary<string, Roles> Services = new(StringComparer.Ordinal)
    {
        [Proto.Sweeps.Descriptor.FullName] = Roles.Viewer,
        [Proto.WorkerGateway.Descriptor.FullName] = Roles.Worker,
        [Proto.DataSets.Descriptor.FullName] = Roles.Worker,
        [Proto.GradientExchange.Descriptor.FullName] = Roles.Worker,
        // Workers download plug-in files; uploading code is for users only (UserMethods).
        [Proto.Plugins.Descriptor.FullName] = Roles.Worker,
        [HealthService] = Roles.None,
    };

    /// <summary>Methods of the Sweeps service that change a sweep: users only.</summary>
    private static readonly HashSet<string> UserMethods =
    [
        .. new[] { "SubmitSweep", "CancelSweep", "PauseSweep", "ResumeSweep", "ExtendSweep", "StopTrial" }
            .Select(m => $"/{Proto.Sweeps.Descriptor.FullName}/{m}"),
        $"/{Proto.Plugins.Descriptor.FullName}/UploadPluginFile",
    ];

    /// <summary>The role <paramref name="method"/> ("/package.Service/Method") needs; <see cref="Roles.None"/> when it is open.</summary>
    public static Roles Required(string method)
    {
        ArgumentNullException.ThrowIfNull(method);
        if (UserMethods.Contains(method)) return Roles.User;
        var parts = method.Split('/', StringSplitOptions.RemoveEmptyEntries);
        return parts.Length == 2 && Services.TryGetValue(parts[0], out var roles) ? roles : Roles.All;
    }

    /// <summary>Whether <paramref name="granted"/> holds every role in <paramref name="required"/>.</summary>
    public static bool Allows(Roles granted, Roles required) => (granted & required) == required;
}

using Orchestrator.Coordinator.Checkpoints;

namespace Orchestrator.Coordinator.Sweeps;

/// <summary>Registers the sweep and trial state machines.</summary>
public static class SweepsServiceCollectionExtensions
{
    /// <summary>
    /// Adds <see cref="SweepManager"/> and what it is made of: <see cref="TrialLifecycle"/>,
    /// <see cref="SweepRuntimes"/>, <see cref="RecordUpdates"/> and <see cref="CheckpointRetention"/>, and
    /// the trials' logs (<see cref="Logs.TrialLogs"/>).
    /// They need the state store, the checkpoint store, the worker registry, the sweep events and a
    /// <see cref="TimeProvider"/>.
    /// </summary>
    public static IServiceCollection AddSweeps(this IServiceCollection services)
    {
        services.AddSingleton<RecordUpdates>();
        services.AddSingleton<SweepRuntimes>();
        services.AddSingleton<CheckpointRetention>();
        services.AddSingleton<TrialLifecycle>();
        services.AddSingleton<SweepManager>();
        services.AddSingleton<Logs.TrialLogs>();
        return services;
    }
}

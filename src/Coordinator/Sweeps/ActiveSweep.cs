using Orchestrator.Sweeps;

namespace Orchestrator.Coordinator.Sweeps;

/// <summary>A sweep the scheduler serves (pending or running), with its validated spec.</summary>
public sealed record ActiveSweep(string Id, ValidatedSweep Spec);

namespace Orchestrator.Coordinator.Sweeps;

/// <summary>
/// An operation that the sweep or trial is not in a state to take (pausing a finished sweep,
/// stopping a trial that already ended, extending a grid). The gRPC layer answers FAILED_PRECONDITION.
/// </summary>
public sealed class SweepOperationException(string message) : Exception(message);

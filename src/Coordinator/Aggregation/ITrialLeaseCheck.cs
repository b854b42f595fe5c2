using Orchestrator.Coordinator.Sweeps;

namespace Orchestrator.Coordinator.Aggregation;

/// <summary>Whether a fencing token is a trial's current one (only the current attempt may aggregate).</summary>
public interface ITrialLeaseCheck
{
    /// <summary>True when <paramref name="fencingToken"/> is the running trial's current token.</summary>
    Task<bool> IsCurrentAsync(string trialId, long fencingToken, CancellationToken cancellationToken);
}

/// <summary>The check against the state store, through <see cref="SweepManager.CurrentAsync"/>.</summary>
internal sealed class SweepLeaseCheck(SweepManager sweeps) : ITrialLeaseCheck
{
    public async Task<bool> IsCurrentAsync(string trialId, long fencingToken, CancellationToken cancellationToken) =>
        await sweeps.CurrentAsync(trialId, fencingToken, cancellationToken).ConfigureAwait(false) is not null;
}

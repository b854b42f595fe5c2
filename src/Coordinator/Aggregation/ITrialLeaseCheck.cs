using Orchestrator.Coordinator.State;

namespace Orchestrator.Coordinator.Aggregation;

/// <summary>Whether a fencing token is a trial's current one (only the current attempt may aggregate).</summary>
public interface ITrialLeaseCheck
{
    /// <summary>True when <paramref name="fencingToken"/> is the running trial's current token.</summary>
    Task<bool> IsCurrentAsync(string trialId, long fencingToken, CancellationToken cancellationToken);
}

/// <summary>The check against the state store (the rule is <see cref="Domain.TrialRecord.IsHeldWith"/>, as for uploads).</summary>
internal sealed class StoreLeaseCheck(IStateStore store) : ITrialLeaseCheck
{
    public async Task<bool> IsCurrentAsync(string trialId, long fencingToken, CancellationToken cancellationToken) =>
        await store.GetTrialAsync(trialId, cancellationToken).ConfigureAwait(false) is { } trial && trial.IsHeldWith(fencingToken);
}

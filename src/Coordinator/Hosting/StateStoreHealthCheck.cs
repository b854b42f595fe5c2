using Microsoft.Extensions.Diagnostics.HealthChecks;
using Orchestrator.Coordinator.State;

namespace Orchestrator.Coordinator.Hosting;

/// <summary>
/// Readiness: the coordinator can serve only while its state store answers. A coordinator whose
/// Redis is down stays alive (liveness passes: restarting it would not help) but is taken out of
/// its Service until Redis is back.
/// </summary>
internal sealed class StateStoreHealthCheck(IStateStore store) : IHealthCheck
{
    /// <summary>The tag of checks that gate readiness only (<c>/readyz</c>), never liveness (<c>/healthz</c>).</summary>
    public const string ReadinessTag = "ready";

    /// <summary>A probe waits at most this long for the store, well within a probe's usual timeout.</summary>
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(2);

    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(Timeout);
        try
        {
            await store.PingAsync(deadline.Token).ConfigureAwait(false);
            return HealthCheckResult.Healthy();
        }
        catch (StateStoreUnavailableException e)
        {
            return HealthCheckResult.Unhealthy("the state store cannot be reached: " + e.Message);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return HealthCheckResult.Unhealthy($"the state store did not answer within {Timeout.TotalSeconds:0} s");
        }
    }
}

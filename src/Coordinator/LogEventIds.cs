namespace Orchestrator.Coordinator;

/// <summary>
/// The coordinator's log event ids: each subsystem numbers its <c>[LoggerMessage]</c> events
/// from its own base, so an id names one event whatever the category (log collectors filter by it).
/// </summary>
internal static class LogEventIds
{
    /// <summary>Sweeps: submit, recovery, the searcher's decisions, finishing (<c>Sweeps/SweepManager</c>).</summary>
    public const int Sweeps = 100;

    /// <summary>Trials: assignment, re-queue, hand-back, end (<c>Sweeps/TrialLifecycle</c>).</summary>
    public const int Trials = 200;

    /// <summary>The scheduler (<c>Scheduling/</c>).</summary>
    public const int Scheduling = 300;

    /// <summary>Worker streams (<c>Grpc/WorkerGatewayService</c>).</summary>
    public const int Workers = 400;

    /// <summary>Coordinator metrics (<c>Metrics/</c>).</summary>
    public const int Metrics = 500;

    /// <summary>Gradient aggregation and its transports (the gradient socket).</summary>
    public const int Aggregation = 600;

    /// <summary>Data delivery (<c>Data/</c>).</summary>
    public const int Data = 700;

    /// <summary>State stores (<c>State/</c>).</summary>
    public const int State = 800;

    /// <summary>Hosting and start-up (<c>Hosting/</c>).</summary>
    public const int Hosting = 900;

    /// <summary>Credentials and roles: refused calls (<c>Security/</c>).</summary>
    public const int Security = 1000;
}

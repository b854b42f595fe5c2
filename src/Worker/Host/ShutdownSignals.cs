using System.Runtime.InteropServices;

namespace Orchestrator.Worker.Host;

/// <summary>
/// SIGTERM and SIGINT (Ctrl+C) for a worker process. The first starts a drain
/// (<see cref="WorkerAgent.Drain"/>) bounded by the drain timeout; a second, or the first when
/// the timeout is zero, stops at once (<see cref="WorkerAgent.StopNow"/>). Kubernetes sends
/// SIGTERM when it deletes a pod and SIGKILL once terminationGracePeriodSeconds have passed, so
/// the drain timeout must stay below the grace period.
/// </summary>
public sealed class ShutdownSignals : IDisposable
{
    private readonly WorkerAgent _agent;
    private readonly TimeSpan _drainTimeout;
    private readonly PosixSignalRegistration _terminate;
    private readonly PosixSignalRegistration _interrupt;
    private int _received;
    private int _exitCode;

    private ShutdownSignals(WorkerAgent agent, TimeSpan drainTimeout)
    {
        _agent = agent;
        _drainTimeout = drainTimeout;
        _terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        _interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
    }

    /// <summary>Handles SIGTERM and SIGINT for <paramref name="agent"/> until disposed (zero <paramref name="drainTimeout"/>: no drain).</summary>
    public static ShutdownSignals Register(WorkerAgent agent, TimeSpan drainTimeout)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(drainTimeout, TimeSpan.Zero);
        return new ShutdownSignals(agent, drainTimeout);
    }

    /// <summary>
    /// The process's exit code: 0 unless running trials had to be stopped at once (losing the
    /// epoch in progress), then 128 + the number of the first signal (130 for SIGINT, 143 for
    /// SIGTERM), as a shell reports a process that a signal killed.
    /// </summary>
    public int ExitCode => _agent.InterruptedTrials ? Volatile.Read(ref _exitCode) : 0;

    private void OnSignal(PosixSignalContext context)
    {
        // The worker ends on its own terms: RunAsync returns once the drain is over, or at once.
        context.Cancel = true;
        Interlocked.CompareExchange(ref _exitCode, context.Signal == PosixSignal.SIGINT ? 130 : 143, 0);
        var count = Interlocked.Increment(ref _received);
        if (count == 1 && _drainTimeout > TimeSpan.Zero) _agent.Drain(_drainTimeout);
        else _agent.StopNow(count == 1 ? "--drain-timeout 0" : "signalled again");
    }

    public void Dispose()
    {
        _terminate.Dispose();
        _interrupt.Dispose();
    }
}

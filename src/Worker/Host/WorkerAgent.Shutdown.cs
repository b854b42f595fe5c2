using System.Diagnostics;
using Microsoft.Extensions.Logging;

namespace Orchestrator.Worker.Host;

/// <summary>The worker's shutdown: a drain (finish each trial's epoch, hand the trials back) or a stop at once.</summary>
public sealed partial class WorkerAgent
{
    /// <summary>
    /// Starts a graceful shutdown (the first SIGTERM or Ctrl+C): no new trials (the coordinator is
    /// told at once), and each running trial finishes the epoch in progress, uploads its
    /// checkpoint and is handed back, so the coordinator re-queues it to resume elsewhere without
    /// counting an attempt (data-parallel ranks on other workers stop after the same epoch).
    /// <see cref="RunAsync"/> returns once that is done and delivered; if it takes longer than
    /// <paramref name="timeout"/>, the worker stops at once (<see cref="StopNow"/>).
    /// </summary>
    public void Drain(TimeSpan timeout)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(timeout, TimeSpan.Zero);
        bool done;
        lock (_gate)
        {
            if (_shuttingDown) return;
            _shuttingDown = true;
            _draining = true;
            _drainStarted = Stopwatch.GetTimestamp();
            var work = _trials.Values.Select(t => t.DrainTarget).ToList();
            foreach (var t in _trials.Values) t.Drain();
            if (work.Count == 0) ShutdownLog.DrainingIdle(_logger);
            else ShutdownLog.Draining(_logger, string.Join(", ", work), timeout.TotalSeconds);
            done = _trials.IsEmpty;
        }
        // Tell the coordinator now, not at the next heartbeat, so it assigns this worker nothing more.
        Send(HeartbeatMessage());
        _drainTimeout = TimeProvider.System.CreateTimer(_ => StopNow($"the drain took longer than {timeout.TotalSeconds:0} s"),
            null, timeout, Timeout.InfiniteTimeSpan);
        if (done) DrainDone();
    }

    /// <summary>Ready for work: connected to the coordinator (welcomed) and not draining. The worker's readiness probe.</summary>
    public bool IsReady => _connected && !_draining;

    /// <summary>
    /// Stops at once (a second signal, the drain timeout, or --drain-timeout 0): running trials
    /// stop at the next batch and lose the epoch in progress, as when the worker is killed, and
    /// <see cref="RunAsync"/> returns.
    /// </summary>
    public void StopNow(string reason)
    {
        string work;
        lock (_gate)
        {
            if (_stopping) return;
            _stopping = true;
            _draining = true;
            work = string.Join(", ", _trials.Values.Select(t => t.DrainTarget));
            InterruptedTrials = work.Length > 0;
        }
        if (work.Length > 0) ShutdownLog.StoppingNow(_logger, reason, work);
        else ShutdownLog.StoppingIdle(_logger, reason);
        _stopNow.Cancel();
    }

    /// <summary>The last trial of a drain ended: leave now if nothing is left to tell the coordinator, else once it is written.</summary>
    private void DrainDone()
    {
        _drained.TrySetResult();
        // Not on this (trial or signal) thread: cancelling ends the session, whose callbacks may take a while.
        if (Volatile.Read(ref _undelivered) == 0) _ = _nothingToSay.CancelAsync();
    }

    /// <summary>A trial thread ended (its outcome is already queued); <paramref name="summary"/> says how, for the drain's last line.</summary>
    void ITrialHost.Ended(TrialRunner runner, string summary)
    {
        bool done;
        lock (_gate)
        {
            _trials.TryRemove(new KeyValuePair<string, TrialRunner>(Key(runner.Lease.TrialId, runner.Lease.Rank), runner));
            if (_shuttingDown) _drainSummary.Add(summary);
            done = _shuttingDown && _trials.IsEmpty;
        }
        if (done) DrainDone();
    }

    private static partial class ShutdownLog
    {
        [LoggerMessage(102, LogLevel.Information, "Draining: finishing {Work}, up to {Seconds:0} s; send the signal again to stop now")]
        public static partial void Draining(ILogger logger, string work, double seconds);

        [LoggerMessage(103, LogLevel.Information, "Draining: no trial is running; the worker stops")]
        public static partial void DrainingIdle(ILogger logger);

        [LoggerMessage(104, LogLevel.Information, "Drained in {Seconds:F1} s: {Summary}; the worker exits")]
        public static partial void DrainFinished(ILogger logger, double seconds, string summary);

        [LoggerMessage(105, LogLevel.Warning, "Stopping now ({Reason}): {Work} will not finish")]
        public static partial void StoppingNow(ILogger logger, string reason, string work);

        [LoggerMessage(106, LogLevel.Information, "Stopping now ({Reason}); no trial is running")]
        public static partial void StoppingIdle(ILogger logger, string reason);
    }
}

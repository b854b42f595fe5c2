namespace Orchestrator.Coordinator.Aggregation;

// The session's clocks: who the others wait for, and the watchdog that fails a stalled step.
internal sealed partial class AggregationSession
{
    /// <summary>
    /// After <paramref name="rank"/> sent a chunk: every rank now behind the furthest one starts
    /// (or keeps) a stall clock; the sender restarts its own, or stops it when it caught up.
    /// </summary>
    private void TrackWaitingLocked(int rank)
    {
        var now = _clock.GetTimestamp();
        var furthest = 0;
        foreach (var n in _sent) furthest = Math.Max(furthest, n);
        for (var r = 0; r < WorldSize; r++)
        {
            if (_sent[r] >= furthest) _waitingSince[r] = 0;
            else if (r == rank || _waitingSince[r] == 0) _waitingSince[r] = now;
        }
    }

    /// <summary>
    /// Fails the session when the ranks do not all join in time, or when a rank the others wait
    /// for sends nothing for the stall timeout. Checks four times per timeout, so a stall is
    /// reported between 1 and 1.25 timeouts after it began.
    /// </summary>
    private async Task WatchAsync(CancellationToken ct)
    {
        var interval = TimeSpan.FromTicks(Math.Max(TimeSpan.FromMilliseconds(10).Ticks,
            Math.Min(_options.StallTimeout.Ticks, _options.JoinTimeout.Ticks) / 4));
        try
        {
            while (!ct.IsCancellationRequested)
            {
                await Task.Delay(interval, _clock, ct).ConfigureAwait(false);
                lock (_gate)
                {
                    if (_failure is not null) return;
                    if (_joined < WorldSize)
                    {
                        if (_clock.GetElapsedTime(_createdAt) > _options.JoinTimeout)
                            FailLocked(AggregationFailure.NotJoined(TrialId, [.. Enumerable.Range(0, WorldSize).Where(r => _ranks[r] is null)], _options.JoinTimeout));
                        continue;
                    }
                    for (var r = 0; r < WorldSize; r++)
                    {
                        if (_waitingSince[r] != 0 && _clock.GetElapsedTime(_waitingSince[r]) > _options.StallTimeout)
                        {
                            FailLocked(AggregationFailure.Stalled(TrialId, r, _options.StallTimeout));
                            return;
                        }
                    }
                }
            }
        }
        catch (OperationCanceledException)
        {
            // The session ended.
        }
    }
}

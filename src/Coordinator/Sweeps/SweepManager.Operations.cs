using Orchestrator.Coordinator.Checkpoints;
using Orchestrator.Coordinator.Domain;
using Orchestrator.Coordinator.State;
using Orchestrator.Specs;
using Orchestrator.Sweeps;

namespace Orchestrator.Coordinator.Sweeps;

/// <summary>What users do to a running sweep: cancel, pause, resume, stop a trial, extend the budget (trials or epochs).</summary>
public sealed partial class SweepManager
{
    /// <summary>Cancels a sweep: pending trials cancelled, running ones stopped.</summary>
    public async Task<SweepRecord?> CancelAsync(string sweepId, CancellationToken ct)
    {
        var sweep = await store.GetSweepAsync(sweepId, ct).ConfigureAwait(false);
        if (sweep is null) return null;
        if (sweep.IsUnfinished)
            await FinishSweepAsync(sweepId, SweepStatus.Cancelled, "cancelled by a user", ct).ConfigureAwait(false);
        return await store.GetSweepAsync(sweepId, ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Pauses a sweep: none of its trials is assigned until <see cref="ResumeAsync"/>, and its
    /// running trials are handed back to the queue (without counting as an attempt); they resume
    /// from their last checkpoint, so the work of the epoch in progress is done again. Pausing a
    /// paused sweep changes nothing. Null for an unknown sweep.
    /// </summary>
    /// <exception cref="SweepOperationException">The sweep has ended.</exception>
    public async Task<SweepRecord?> PauseAsync(string sweepId, CancellationToken ct)
    {
        var sweep = await store.GetSweepAsync(sweepId, ct).ConfigureAwait(false);
        if (sweep is null) return null;
        if (!sweep.IsUnfinished) throw Ended(sweep, "paused");
        var runtime = runtimes.Of(sweep);
        await runtime.Gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            // Flag first, so that a scheduler pass under way assigns nothing more.
            runtime.Paused = true;
            var paused = await updates.SweepAsync(sweepId, s => s.State is SweepStatus.Pending or SweepStatus.Running
                ? s with { State = SweepStatus.Paused, Message = "paused by a user" }
                : null, ct).ConfigureAwait(false);
            if (paused is null)
            {
                var now = await store.GetSweepAsync(sweepId, ct).ConfigureAwait(false);
                runtime.Paused = now is { State: SweepStatus.Paused };
                return now;
            }
            PublishSweep(paused);
            Log.SweepOperation(logger, sweepId, "paused");
            foreach (var trial in await store.ListTrialsPageAsync(sweepId, TrialPageQuery.First(int.MaxValue, TrialStatus.Running), ct).ConfigureAwait(false))
                await trials.RequeueAsync(trial.Id, trial.FencingToken, "sweep paused", handedBack: true, ct).ConfigureAwait(false);
            return await store.GetSweepAsync(sweepId, ct).ConfigureAwait(false);
        }
        finally
        {
            runtime.Gate.Release();
        }
    }

    /// <summary>Resumes a paused sweep: its trials are assigned again. Resuming a sweep that is not paused changes nothing.</summary>
    /// <exception cref="SweepOperationException">The sweep has ended.</exception>
    public async Task<SweepRecord?> ResumeAsync(string sweepId, CancellationToken ct)
    {
        var sweep = await store.GetSweepAsync(sweepId, ct).ConfigureAwait(false);
        if (sweep is null) return null;
        if (!sweep.IsUnfinished) throw Ended(sweep, "resumed");
        var runtime = runtimes.Of(sweep);
        await runtime.Gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            var resumed = await updates.SweepAsync(sweepId, s => s.State == SweepStatus.Paused
                ? s with { State = SweepStatus.Running, Message = null }
                : null, ct).ConfigureAwait(false);
            runtime.Paused = false;
            if (resumed is null) return await store.GetSweepAsync(sweepId, ct).ConfigureAwait(false);
            PublishSweep(resumed);
            Log.SweepOperation(logger, sweepId, "resumed");
            workers.Signal();
            return resumed;
        }
        finally
        {
            runtime.Gate.Release();
        }
    }

    /// <summary>
    /// Stops one trial early (orch stop): it ends as stopped, keeps its checkpoint and metrics, its
    /// workers are freed, and the searcher counts it as a result at the epochs it trained (a
    /// model-based method may create its successor). Null for an unknown trial.
    /// </summary>
    /// <exception cref="SweepOperationException">The trial has ended, or its sweep has.</exception>
    public async Task<TrialRecord?> StopTrialAsync(string trialId, CancellationToken ct)
    {
        var trial = await store.GetTrialAsync(trialId, ct).ConfigureAwait(false);
        if (trial is null) return null;
        if (trial.IsFinished) throw new SweepOperationException($"trial {trialId} has already ended ({trial.State.ToString().ToLowerInvariant()})");
        var sweep = await store.GetSweepAsync(trial.SweepId, ct).ConfigureAwait(false);
        if (sweep is null || !sweep.IsUnfinished) throw new SweepOperationException($"the sweep of trial {trialId} has ended");
        var runtime = runtimes.Of(sweep);
        await runtime.Gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            const string reason = "stopped by a user";
            var actions = runtime.Searcher.Stop(trial.Index, reason);
            if (actions.Count == 0)
            {
                // The searcher had already let it go (a replay is under way): end it in the store alone.
                await trials.StopAsync(trialId, reason, ct).ConfigureAwait(false);
            }
            else await ApplyActionsAsync(runtime, actions, ct).ConfigureAwait(false);
            Log.SweepOperation(logger, sweep.Id, $"trial {trialId} {reason}");
            return await store.GetTrialAsync(trialId, ct).ConfigureAwait(false);
        }
        finally
        {
            runtime.Gate.Release();
        }
    }

    /// <summary>
    /// Raises a sweep's trial budget by <paramref name="moreTrials"/> (orch extend --trials): the
    /// searcher creates the trials its method creates for it. Null for an unknown sweep.
    /// </summary>
    /// <exception cref="SweepOperationException">The sweep cannot take more trials (see <see cref="ExtendWithAsync"/>; a grid search covers its grid once).</exception>
    public Task<SweepRecord?> ExtendAsync(string sweepId, int moreTrials, CancellationToken ct)
    {
        if (moreTrials < 1) throw new SweepOperationException($"extend by at least one trial (got {moreTrials})");
        var what = $"extended by {moreTrials} trials";
        return ExtendWithAsync(sweepId, what, runtime => Task.FromResult(new Extension(runtime.Searcher.Extend(moreTrials))), ct);
    }

    /// <summary>
    /// Raises the epochs every trial of a sweep trains to <paramref name="epochs"/> (orch extend
    /// --epochs). Pending trials train the new epochs; running ones go back to the queue (without
    /// counting as an attempt) and resume from their last checkpoint with them; completed trials
    /// whose latest checkpoint is kept train on from it unless the early-stopping rule keeps only
    /// the better ones (<see cref="Searcher.ExtendEpochs"/>). Stopped and failed trials stay as they
    /// are. Null for an unknown sweep.
    /// </summary>
    /// <exception cref="SweepOperationException">See <see cref="ExtendWithAsync"/>; also epochs that are searched or not more than now.</exception>
    public Task<SweepRecord?> ExtendEpochsAsync(string sweepId, int epochs, CancellationToken ct)
    {
        if (epochs < 1) throw new SweepOperationException($"extend to at least one epoch (got {epochs})");
        return ExtendWithAsync(sweepId, $"extended to {epochs} epochs", async runtime =>
        {
            ValidatedSweep extended;
            try
            {
                extended = runtime.Spec.WithEpochs(epochs);
            }
            catch (SpecException e)
            {
                throw new InvalidOperationException(e.Field is { } field ? $"{field}: {e.Problem}" : e.Message, e);
            }
            if (ReferenceEquals(extended, runtime.Spec)) throw new InvalidOperationException($"its trials train {epochs} epochs already");
            var all = await store.ListTrialsAsync(runtime.Id, ct).ConfigureAwait(false);
            var resumable = all.Where(t => t.State == TrialStatus.Completed && t.CheckpointEpoch > 0 && checkpoints.Exists(t.SweepId, t.Id, CheckpointSlot.Latest))
                .Select(t => t.Index).ToHashSet();
            return new Extension(runtime.Searcher.ExtendEpochs(extended, resumable))
            {
                Change = s => s with { Epochs = epochs },
                // Once the record holds the epochs (and the runtime's spec took them: ApplyActionsAsync),
                // the running trials go back to the queue to resume with them (an epoch in progress is trained again).
                Then = async () =>
                {
                    foreach (var running in all.Where(t => t.State == TrialStatus.Running))
                        await trials.RequeueAsync(running.Id, running.FencingToken, $"sweep extended to {epochs} epochs", handedBack: true, ct).ConfigureAwait(false);
                    // What listings show before they start (an assignment sets it from the spec anyway).
                    foreach (var pending in all.Where(t => t.State is TrialStatus.Pending or TrialStatus.Running))
                        await updates.TrialAsync(pending.Id, t => t.State == TrialStatus.Pending && t.Epochs < epochs ? t with { Epochs = epochs } : null, ct).ConfigureAwait(false);
                },
            };
        }, ct);
    }

    /// <summary>
    /// What both kinds of orch extend share: a sweep that completed because every trial ended is
    /// reopened; one that failed, was cancelled or reached its target cannot be extended. The
    /// searcher's actions (new trials, trials that train on) are applied like any others.
    /// </summary>
    /// <exception cref="SweepOperationException">The sweep has ended for good, or the searcher refused (its message says why).</exception>
    private async Task<SweepRecord?> ExtendWithAsync(string sweepId, string what, Func<SweepRuntime, Task<Extension>> extend, CancellationToken ct)
    {
        var sweep = await store.GetSweepAsync(sweepId, ct).ConfigureAwait(false);
        if (sweep is null) return null;
        if (sweep.State is not (SweepStatus.Completed or SweepStatus.Pending or SweepStatus.Running or SweepStatus.Paused))
            throw Ended(sweep, "extended");
        // A completed sweep has no runtime: one is built from its record and dropped again unless it reopens.
        var runtime = runtimes.Of(sweep);
        var reopen = sweep.State == SweepStatus.Completed;
        await runtime.Gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            Extension extension;
            try
            {
                extension = await extend(runtime).ConfigureAwait(false);
            }
            catch (InvalidOperationException e)
            {
                if (reopen) runtimes.Remove(sweepId);
                throw new SweepOperationException($"sweep {sweepId} cannot be {what}: {e.Message}");
            }
            if (reopen) runtime.Finishing = false;
            // New trials first (idempotent: a repeated extend after a crash creates the same ones), then the record, then reopened trials.
            await ApplyActionsAsync(runtime, extension.Actions, ct, s =>
            {
                s = extension.Change?.Invoke(s) ?? s;
                return reopen && s.State == SweepStatus.Completed
                    ? s with { State = SweepStatus.Running, FinishedAt = null, Message = what }
                    : s;
            }).ConfigureAwait(false);
            if (extension.Then is { } then) await then().ConfigureAwait(false);
            Log.SweepOperation(logger, sweepId, what);
            workers.Signal();
            return await store.GetSweepAsync(sweepId, ct).ConfigureAwait(false);
        }
        finally
        {
            runtime.Gate.Release();
        }
    }

    /// <summary>What an extension asks of the searcher, how it changes the sweep record, and what follows once that is written.</summary>
    private sealed record Extension(IReadOnlyList<SearchAction> Actions)
    {
        public Func<SweepRecord, SweepRecord>? Change { get; init; }
        public Func<Task>? Then { get; init; }
    }

    private static SweepOperationException Ended(SweepRecord sweep, string verb) =>
        new($"sweep {sweep.Id} has ended ({sweep.State.ToString().ToLowerInvariant()}): it cannot be {verb}");

    /// <summary>
    /// Ends the sweep: cancels its unfinished trials, then moves it from pending, running or
    /// paused to <paramref name="state"/> (a compare-and-set: one finisher wins). Trials go first
    /// so that a sweep seen finished has no unfinished trial left.
    /// </summary>
    private async Task FinishSweepAsync(string sweepId, SweepStatus state, string message, CancellationToken ct)
    {
        if (await store.GetSweepAsync(sweepId, ct).ConfigureAwait(false) is not { IsUnfinished: true }) return;
        // Workers freed by the cancellations wake the scheduler: it must not hand them the trials still to cancel.
        if (runtimes.TryGet(sweepId, out var runtime)) runtime.Finishing = true;
        var reason = $"sweep {state.ToString().ToLowerInvariant()}";
        await trials.CancelPendingAsync(sweepId, reason, ct).ConfigureAwait(false);
        // Running trials one by one: each has workers to stop.
        foreach (var trial in await store.ListTrialsPageAsync(sweepId, TrialPageQuery.First(int.MaxValue, TrialStatus.Running), ct).ConfigureAwait(false))
            await trials.CancelAsync(trial.Id, reason, ct).ConfigureAwait(false);
        var now = clock.GetUtcNow();
        var finished = await updates.SweepAsync(sweepId, s => s.IsUnfinished
            ? s with { State = state, FinishedAt = now, Message = message }
            : null, ct).ConfigureAwait(false);
        if (finished is null) return;
        Log.SweepFinished(logger, sweepId, state.ToString(), message);
        PublishSweep(finished);
        runtimes.Remove(sweepId);
    }
}

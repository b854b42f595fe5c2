using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using Orchestrator.Coordinator.Domain;

namespace Orchestrator.Coordinator.State;

/// <summary>
/// Argument checks and exception messages shared by every <see cref="IStateStore"/>, so both
/// stores refuse the same inputs with the same words. Throw paths stay out of line.
/// </summary>
internal static class StateStoreErrors
{
    /// <summary>Checks that every trial belongs to <paramref name="sweepId"/> and that no id repeats.</summary>
    public static void ValidateTrials(string sweepId, IReadOnlyList<TrialRecord> trials)
    {
        ArgumentNullException.ThrowIfNull(trials);
        var seen = new HashSet<string>(trials.Count, StringComparer.Ordinal);
        foreach (var trial in trials)
        {
            ArgumentNullException.ThrowIfNull(trial);
            if (!string.Equals(trial.SweepId, sweepId, StringComparison.Ordinal)) ThrowForeignTrial(trial.Id, trial.SweepId, sweepId);
            if (!seen.Add(trial.Id)) ThrowRepeatedTrial(trial.Id);
        }
    }

    /// <summary>Checks that every update is of a trial of <paramref name="sweepId"/> and that no trial repeats.</summary>
    public static void ValidateUpdates(string sweepId, IReadOnlyList<TrialUpdate> updates)
    {
        ArgumentNullException.ThrowIfNull(updates);
        ValidateTrials(sweepId, updates.Select(u => u.Updated).ToList());
    }

    /// <summary>Checks that <paramref name="update"/> is of trial <paramref name="trialId"/>.</summary>
    public static void ValidateUpdate(string trialId, TrialUpdate update)
    {
        ArgumentNullException.ThrowIfNull(update.Updated);
        if (!string.Equals(update.Updated.Id, trialId, StringComparison.Ordinal))
            throw new ArgumentException($"The update is of trial '{update.Updated.Id}', not '{trialId}'.");
    }

    [DoesNotReturn, MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowSweepExists(string sweepId) =>
        throw new InvalidOperationException($"Sweep '{sweepId}' already exists.");

    [DoesNotReturn, MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowTrialExists(string trialId) =>
        throw new InvalidOperationException($"Trial '{trialId}' already exists; the sweep was not created.");

    [DoesNotReturn, MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowUnknownSweep(string sweepId) =>
        throw new InvalidOperationException($"Sweep '{sweepId}' does not exist.");

    [DoesNotReturn, MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowForeignTrial(string trialId, string trialSweepId, string sweepId) =>
        throw new ArgumentException($"Trial '{trialId}' belongs to sweep '{trialSweepId}', not '{sweepId}'.");

    [DoesNotReturn, MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowRepeatedTrial(string trialId) =>
        throw new ArgumentException($"Trial '{trialId}' appears more than once.");

    [MethodImpl(MethodImplOptions.NoInlining)]
    public static StateStoreUnavailableException Unavailable(string store, Exception inner) =>
        new($"The {store} state store cannot be reached: {inner.Message}", inner);
}

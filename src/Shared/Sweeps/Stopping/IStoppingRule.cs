using System.Text.Json;

namespace Orchestrator.Sweeps.Stopping;

/// <summary>
/// A rule that stops unpromising trials early (search.earlyStopping), whichever method creates the
/// trials. Pure and deterministic: the same reports in the same order give the same decisions, and
/// its state round-trips through <see cref="Snapshot"/> and <see cref="Restore"/> with the searcher's.
/// </summary>
/// <remarks>
/// Scores are higher-is-better: the searcher negates a minimised objective and maps a diverged
/// trial's NaN to <see cref="StoppingRules.Worst"/>, so a rule never deals with the goal or with NaN.
/// </remarks>
public interface IStoppingRule
{
    /// <summary>The rule's name in sweep files ("asha", "hyperband", "median").</summary>
    string Name { get; }

    /// <summary>
    /// Trial <paramref name="trialIndex"/> reported <paramref name="score"/> after <paramref name="epoch"/>
    /// (each trial's epochs arrive once, in order). True to stop it now.
    /// </summary>
    bool ShouldStop(int trialIndex, int epoch, double score);

    /// <summary>
    /// The trials' epochs were raised (orch extend --epochs) and this rule was built for the new
    /// epochs with the old rule's state. Of <paramref name="completed"/>, the trials that had
    /// trained all the old epochs, returns those that should train on; the rule records the others
    /// where it judged them, so that later arrivals are compared with them.
    /// </summary>
    IReadOnlyList<int> TrainOn(IReadOnlyList<FinishedRun> completed);

    /// <summary>The rule's state, for the searcher's snapshot.</summary>
    JsonElement Snapshot();

    /// <summary>Takes back a state made by <see cref="Snapshot"/>.</summary>
    void Restore(JsonElement state);
}

/// <summary>A trial that trained all its epochs: its last epoch and the score it reported there.</summary>
public readonly record struct FinishedRun(int Trial, int Epoch, double Score);

/// <summary>Builds the rule a sweep's search.earlyStopping names.</summary>
public static class StoppingRules
{
    /// <summary>The score of a diverged trial (NaN objective): below any real one, yet finite so that quantiles stay defined.</summary>
    public const double Worst = -1e300;

    /// <summary>The rule for <paramref name="settings"/>, or null when the sweep stops no trial early.</summary>
    public static IStoppingRule? For(EarlyStoppingSettings? settings) => settings?.Method switch
    {
        null => null,
        EarlyStoppingSettings.Median => new MedianStopping(settings.GraceEpochs, settings.MinTrials),
        _ => new SuccessiveHalving(settings.Method, settings.BracketMilestones(), settings.ReductionFactor),
    };
}

using System.Text.Json;

namespace Orchestrator.Sweeps.Stopping;

/// <summary>
/// The median stopping rule (Golovin et al., 2017, "Google Vizier"): after epoch e (from
/// <c>graceEpochs</c> on), a trial whose best score so far is below the median of the other
/// trials' running averages (the mean of their scores at epochs ≤ e, over the trials that reached
/// epoch e) is stopped. Until <c>minTrials</c> other trials have reached e, nobody is stopped there.
/// </summary>
public sealed class MedianStopping(int graceEpochs, int minTrials) : IStoppingRule
{
    // Each trial's reports in order: (epoch, score).
    private readonly SortedDictionary<int, List<(int Epoch, double Score)>> _history = [];

    /// <inheritdoc />
    public string Name => EarlyStoppingSettings.Median;

    /// <inheritdoc />
    public bool ShouldStop(int trialIndex, int epoch, double score)
    {
        if (!_history.TryGetValue(trialIndex, out var own)) _history[trialIndex] = own = [];
        own.Add((epoch, score));
        if (epoch < graceEpochs) return false;
        var averages = new List<double>();
        foreach (var (trial, reports) in _history)
        {
            if (trial == trialIndex || reports[^1].Epoch < epoch) continue;
            averages.Add(reports.Where(r => r.Epoch <= epoch).Average(r => r.Score));
        }
        if (averages.Count < Math.Max(1, minTrials)) return false;
        var median = SuccessiveHalving.Cutoff(averages, 0.5)!.Value;
        return own.Max(r => r.Score) < median;
    }

    /// <summary>Every completed trial trains on: each was above the median at every epoch it reported.</summary>
    public IReadOnlyList<int> TrainOn(IReadOnlyList<FinishedRun> completed)
    {
        ArgumentNullException.ThrowIfNull(completed);
        return [.. completed.Select(r => r.Trial)];
    }

    /// <inheritdoc />
    public JsonElement Snapshot() => JsonSerializer.SerializeToElement(new MedianState
    {
        Trials = [.. _history.Select(kv => new TrialScores { Trial = kv.Key, Epochs = [.. kv.Value.Select(r => r.Epoch)], Scores = [.. kv.Value.Select(r => r.Score)] })],
    }, StoppingJsonContext.Default.MedianState);

    /// <inheritdoc />
    public void Restore(JsonElement state)
    {
        _history.Clear();
        var saved = state.Deserialize(StoppingJsonContext.Default.MedianState) ?? new MedianState();
        foreach (var t in saved.Trials) _history[t.Trial] = [.. t.Epochs.Zip(t.Scores)];
    }
}

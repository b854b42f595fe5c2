using System.Text.Json;
using System.Text.Json.Serialization;

namespace Orchestrator.Sweeps.Stopping;

/// <summary>
/// Asynchronous successive halving (ASHA; Li et al., 2020), and Hyperband as several ASHA brackets.
/// A trial of bracket b reaching a rung (an epoch of <c>milestones[b]</c>) is recorded there and
/// stopped when its score is below the (1 − 1/η) quantile of the scores recorded at that rung
/// before it; otherwise it goes on. Nothing waits for a rung to fill, so workers never idle; the
/// first trials at a rung always continue. Trial i runs in bracket i mod the bracket count.
/// </summary>
public sealed class SuccessiveHalving : IStoppingRule
{
    private readonly int[][] _milestones;
    private readonly double _quantile;
    // _recorded[bracket][rung]: trial → score at that rung, in the order recorded.
    private List<Dictionary<int, double>>[] _recorded;

    /// <param name="name">asha or hyperband.</param>
    /// <param name="milestones">Per bracket, the rung epochs, ascending.</param>
    /// <param name="reductionFactor">η ≥ 2.</param>
    public SuccessiveHalving(string name, int[][] milestones, int reductionFactor)
    {
        ArgumentNullException.ThrowIfNull(milestones);
        ArgumentOutOfRangeException.ThrowIfLessThan(reductionFactor, 2);
        if (milestones.Length == 0) throw new ArgumentException("at least one bracket", nameof(milestones));
        Name = name;
        _milestones = milestones;
        _quantile = 1 - 1.0 / reductionFactor;
        _recorded = Fresh(milestones);
    }

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    public bool ShouldStop(int trialIndex, int epoch, double score)
    {
        var bracket = trialIndex % _milestones.Length;
        var rungs = _milestones[bracket];
        // The highest rung reached and not yet recorded: a resumed trial that skipped a report is
        // judged once, at the rung it is at now.
        for (var r = rungs.Length - 1; r >= 0; r--)
        {
            if (epoch < rungs[r]) continue;
            var recorded = _recorded[bracket][r];
            if (recorded.ContainsKey(trialIndex)) return false;
            var cutoff = Cutoff(recorded.Values, _quantile);
            recorded[trialIndex] = score;
            return cutoff is { } c && score < c;
        }
        return false;
    }

    /// <summary>
    /// Raised epochs add rungs; a completed trial whose last epoch reaches a rung it was never
    /// judged at (the old last epoch often is one) is judged there now, together with the other
    /// completed trials at that rung and the scores recorded there before: the trials at or above
    /// the (1 − 1/η) quantile of them all train on, so ASHA promotes the best 1/η (at least the
    /// best one). A trial past every new rung's epoch trains on and is judged at the next one.
    /// </summary>
    public IReadOnlyList<int> TrainOn(IReadOnlyList<FinishedRun> completed)
    {
        ArgumentNullException.ThrowIfNull(completed);
        var trainOn = new List<int>();
        var judged = new Dictionary<(int Bracket, int Rung), List<FinishedRun>>();
        foreach (var run in completed.OrderBy(r => r.Trial))
        {
            var bracket = run.Trial % _milestones.Length;
            var rungs = _milestones[bracket];
            var rung = Array.FindLastIndex(rungs, m => m <= run.Epoch);
            if (rung < 0 || _recorded[bracket][rung].ContainsKey(run.Trial))
            {
                trainOn.Add(run.Trial);
                continue;
            }
            if (!judged.TryGetValue((bracket, rung), out var group)) judged[(bracket, rung)] = group = [];
            group.Add(run);
        }
        foreach (var ((bracket, rung), group) in judged)
        {
            var recorded = _recorded[bracket][rung];
            foreach (var run in group) recorded[run.Trial] = run.Score;
            var cutoff = Cutoff(recorded.Values, _quantile)!.Value;
            trainOn.AddRange(group.Where(r => r.Score >= cutoff).Select(r => r.Trial));
        }
        return [.. trainOn.Order()];
    }

    /// <summary>The <paramref name="quantile"/> of <paramref name="scores"/>, interpolated linearly between order statistics; null when there are none.</summary>
    public static double? Cutoff(IEnumerable<double> scores, double quantile)
    {
        var sorted = scores.Order().ToArray();
        if (sorted.Length == 0) return null;
        var position = quantile * (sorted.Length - 1);
        // (1 − 1/η)·(n − 1) is often a whole number that floating point misses by an ulp
        // ((1 − 1/3)·9 = 6.000000000000001): interpolating with that stray fraction would put the
        // cut-off just above the score it equals, and stop a trial tied with it.
        var nearest = Math.Round(position);
        if (Math.Abs(position - nearest) < 1e-9) position = nearest;
        var lo = (int)Math.Floor(position);
        var hi = (int)Math.Ceiling(position);
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (position - lo);
    }

    /// <inheritdoc />
    public JsonElement Snapshot()
    {
        var state = new HalvingState
        {
            Rungs = [.. _recorded.Select(bracket => bracket.Select(rung => rung.Select(kv => new RungEntry { Trial = kv.Key, Score = kv.Value }).ToList()).ToList())],
        };
        return JsonSerializer.SerializeToElement(state, StoppingJsonContext.Default.HalvingState);
    }

    /// <inheritdoc />
    public void Restore(JsonElement state)
    {
        var saved = state.Deserialize(StoppingJsonContext.Default.HalvingState) ?? new HalvingState();
        var recorded = Fresh(_milestones);
        for (var b = 0; b < Math.Min(recorded.Length, saved.Rungs.Count); b++)
            for (var r = 0; r < Math.Min(recorded[b].Count, saved.Rungs[b].Count); r++)
                foreach (var e in saved.Rungs[b][r]) recorded[b][r][e.Trial] = e.Score;
        _recorded = recorded;
    }

    private static List<Dictionary<int, double>>[] Fresh(int[][] milestones) =>
        [.. milestones.Select(rungs => rungs.Select(_ => new Dictionary<int, double>()).ToList())];
}

/// <summary>Saved ASHA state: per bracket, per rung, the trials recorded there in order.</summary>
internal sealed class HalvingState
{
    public List<List<List<RungEntry>>> Rungs { get; set; } = [];
}

internal sealed class RungEntry
{
    public int Trial { get; set; }
    public double Score { get; set; }
}

/// <summary>Saved median-rule state: every trial's scores by epoch.</summary>
internal sealed class MedianState
{
    public List<TrialScores> Trials { get; set; } = [];
}

internal sealed class TrialScores
{
    public int Trial { get; set; }
    public List<int> Epochs { get; set; } = [];
    public List<double> Scores { get; set; } = [];
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
[JsonSerializable(typeof(HalvingState))]
[JsonSerializable(typeof(MedianState))]
internal sealed partial class StoppingJsonContext : JsonSerializerContext;

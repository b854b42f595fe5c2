namespace Orchestrator.Sweeps.Stopping;

/// <summary>
/// A sweep's validated search.earlyStopping (docs/sweep-spec.md): the rule and its numbers, with
/// defaults filled in. ASHA stops a trial at a rung (minEpochs·reductionFactor^k epochs) unless it is
/// in the top 1/reductionFactor of the trials that reached that rung; Hyperband runs several ASHA
/// brackets, each starting one rung later; the median rule stops a trial whose best is below the
/// median of the other trials' running averages at the same epoch.
/// </summary>
public sealed record EarlyStoppingSettings
{
    /// <summary>The rule names a sweep file may use.</summary>
    public const string Asha = "asha", Hyperband = "hyperband", Median = "median";

    /// <summary>Every rule name, in the order the docs list them.</summary>
    public static readonly IReadOnlyList<string> Methods = [Asha, Hyperband, Median];

    /// <summary>asha, hyperband or median.</summary>
    public required string Method { get; init; }

    /// <summary>ASHA/Hyperband: η, the factor between rungs; each rung keeps the best 1/η.</summary>
    public int ReductionFactor { get; init; } = 3;

    /// <summary>ASHA/Hyperband: the first rung's epochs.</summary>
    public int MinEpochs { get; init; } = 1;

    /// <summary>The most epochs a trial trains (its trial.epochs).</summary>
    public int MaxEpochs { get; init; }

    /// <summary>ASHA/Hyperband: rungs of the first bracket (epochs minEpochs·η^k below maxEpochs).</summary>
    public int Rungs { get; init; }

    /// <summary>Hyperband: brackets (trial i runs in bracket i mod brackets); 1 for ASHA.</summary>
    public int Brackets { get; init; } = 1;

    /// <summary>Median: no trial is stopped before this epoch.</summary>
    public int GraceEpochs { get; init; } = 1;

    /// <summary>Median: how many other trials must have reached an epoch before the median there counts.</summary>
    public int MinTrials { get; init; } = 3;

    /// <summary>The rungs (epochs) at which bracket b decides, ascending: minEpochs·η^(b+k) below maxEpochs.</summary>
    public int[][] BracketMilestones() =>
        [.. Enumerable.Range(0, Brackets).Select(b => Enumerable.Range(b, Math.Max(0, Rungs - b)).Select(Milestone).ToArray())];

    /// <summary>The epoch of rung <paramref name="k"/> of the first bracket.</summary>
    public int Milestone(int k) => checked(MinEpochs * (int)Math.Pow(ReductionFactor, k));

    /// <summary>How many rungs fit below <paramref name="maxEpochs"/> starting at <paramref name="minEpochs"/>.</summary>
    public static int RungsBelow(int minEpochs, int reductionFactor, int maxEpochs)
    {
        var rungs = 0;
        for (long epoch = minEpochs; epoch < maxEpochs; epoch *= reductionFactor) rungs++;
        return rungs;
    }
}

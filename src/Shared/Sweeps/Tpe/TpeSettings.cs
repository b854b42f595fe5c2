using System.Globalization;
using Orchestrator.Specs;

namespace Orchestrator.Sweeps.Tpe;

/// <summary>
/// A sweep's validated search.tpe (docs/sweep-spec.md), with defaults filled in: how many trials
/// are sampled at random before the model is used, how many candidates the model weighs for each
/// new trial, and the fraction of the results that counts as good.
/// </summary>
public sealed record TpeSettings
{
    /// <summary>The start-up trials when the file gives none: 10, or half of maxTrials when that is fewer.</summary>
    public const int DefaultStartupTrials = 10;

    /// <summary>Candidates drawn from the good results' density for each new trial, by default.</summary>
    public const int DefaultCandidates = 24;

    /// <summary>The fraction of the results that is "good", by default.</summary>
    public const double DefaultGamma = 0.25;

    /// <summary>
    /// Trials sampled at random before the model is used; results of a warm start count toward
    /// them, so an earlier sweep with this many results makes the first trial model-based.
    /// </summary>
    public int StartupTrials { get; init; } = DefaultStartupTrials;

    /// <summary>Samples drawn from l(x), the good results' density, per parameter; the one with the highest l(x)/g(x) wins.</summary>
    public int Candidates { get; init; } = DefaultCandidates;

    /// <summary>The best ⌈gamma·n⌉ of n results (at least one) are "good", the rest "bad"; in (0, 1).</summary>
    public double Gamma { get; init; } = DefaultGamma;

    /// <summary>The default start-up for a budget of <paramref name="maxTrials"/>: 10, or fewer so that half of a small budget is left to the model.</summary>
    public static int DefaultStartupFor(int maxTrials) => Math.Clamp(maxTrials / 2, 1, DefaultStartupTrials);
}

/// <summary>Checks search.tpe and the space TPE is asked to search, naming the field of every problem.</summary>
internal static class TpeParser
{
    private const string Field = "search.tpe";

    /// <summary>
    /// The settings for a tpe sweep, or null for another method (where a search.tpe section is an
    /// error, as it would be silently ignored).
    /// </summary>
    public static TpeSettings? Parse(string method, TpeSection? section, SearchSpace space, int maxTrials, SpecLocations at)
    {
        static string N(int n) => n.ToString(CultureInfo.InvariantCulture);
        if (method != "tpe")
        {
            if (section is not null) throw at.Error(Field, $"applies to search.method tpe, not {method}");
            return null;
        }

        if (space.Searched.Count == 0)
            throw at.Error("search.method", "tpe needs at least one searched parameter (values: [...] or min/max under parameters)");
        // A model that can only pick among a few points would repeat them: on a grid smaller than
        // the budget, grid search covers every point and is the honest choice.
        if (space.GridSize is { } size && size < maxTrials)
            throw at.Error("search.method",
                $"tpe needs a continuous parameter or at least maxTrials combinations; this space has {size.ToString(CultureInfo.InvariantCulture)} points and maxTrials is {N(maxTrials)}");

        section ??= new TpeSection();
        var startup = section.StartupTrials ?? TpeSettings.DefaultStartupFor(maxTrials);
        if (startup < 1) throw at.Error(Field + ".startupTrials", "must be ≥ 1");
        if (startup > maxTrials)
            throw at.Error(Field + ".startupTrials", $"{N(startup)} leaves no trial to the model: it must be ≤ search.maxTrials ({N(maxTrials)})");
        var candidates = section.Candidates ?? TpeSettings.DefaultCandidates;
        if (candidates < 1) throw at.Error(Field + ".candidates", "must be ≥ 1");
        if (candidates > 10_000) throw at.Error(Field + ".candidates", $"{N(candidates)} is more than 10000: a few dozen is plenty");
        var gamma = section.Gamma ?? TpeSettings.DefaultGamma;
        if (!(gamma > 0 && gamma < 1)) throw at.Error(Field + ".gamma", "must be in (0, 1)");
        return new TpeSettings { StartupTrials = startup, Candidates = candidates, Gamma = gamma };
    }
}

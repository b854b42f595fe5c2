namespace Orchestrator.Sweeps;

/// <summary>
/// Ceilings a deployment puts on sweeps, checked when a sweep is submitted so that an impossible
/// request is refused at once rather than discovered while it runs.
/// </summary>
/// <param name="MaxGridPoints">The most points a grid may have (its size is computed, never enumerated).</param>
/// <param name="MaxWorkersPerTrial">The most workers one data-parallel trial may ask for.</param>
/// <param name="MaxTrials">The most trials one sweep may create.</param>
public sealed record SweepLimits(int MaxGridPoints = 100_000, int MaxWorkersPerTrial = 64, int MaxTrials = 100_000)
{
    /// <summary>The defaults.</summary>
    public static SweepLimits Default { get; } = new();
}

/// <summary>The names a sweep file may use besides the trial's (<see cref="Trials.KnownNames"/>).</summary>
public static class SweepNames
{
    /// <summary>Search methods.</summary>
    public static readonly IReadOnlyList<string> Methods = ["grid", "random", "tpe"];

    /// <summary>The metrics workers report each epoch, any of which can be the objective.</summary>
    public static readonly IReadOnlyList<string> Metrics = Trials.MetricNames.Objectives;

    /// <summary>Objective goals.</summary>
    public static readonly IReadOnlyList<string> Goals = ["maximize", "minimize"];

    /// <summary>Distributions of a range parameter.</summary>
    public static readonly IReadOnlyList<string> Distributions = ["uniform", "log-uniform"];

    /// <summary>How the ranks of a data-parallel trial average gradients; the first is the default.</summary>
    public static readonly IReadOnlyList<string> Aggregations = ["ring", "coordinator"];

    /// <summary>Number formats of gradients on the wire (resources.wire).</summary>
    public static readonly IReadOnlyList<string> WireFormats = ["fp32", "bf16"];

    /// <summary>Value types of a range parameter.</summary>
    public static readonly IReadOnlyList<string> Types = ["float", "int"];
}

using System.Globalization;
using Orchestrator.Specs;
using Orchestrator.Trials;

namespace Orchestrator.Sweeps.Stopping;

/// <summary>Checks a sweep file's search.earlyStopping against the trial it applies to, naming the field of every problem.</summary>
internal static class EarlyStoppingParser
{
    private const string Field = "search.earlyStopping";

    /// <summary>
    /// The validated settings, or null without a section. Sets the trial's epochs from maxEpochs
    /// when the file gives only maxEpochs.
    /// </summary>
    public static EarlyStoppingSettings? Parse(EarlyStoppingSection? section, TrialSpec trial, IReadOnlyList<SweepParameter> parameters, SpecLocations at)
    {
        if (section is null) return null;
        void Check(bool ok, string field, string problem)
        {
            if (!ok) throw at.Error($"{Field}.{field}", problem);
        }
        static string N(int n) => n.ToString(CultureInfo.InvariantCulture);

        var method = section.Method;
        if (method is null) throw at.Error(Field + ".method", $"is required: {KnownNames.OneOf(EarlyStoppingSettings.Methods)}");
        Check(EarlyStoppingSettings.Methods.Contains(method), "method", $"unknown rule '{method}': {KnownNames.OneOf(EarlyStoppingSettings.Methods)}");

        // Each trial's epochs are the resource the rules divide: one number for every trial.
        if (parameters.FirstOrDefault(p => p.Path == "epochs" && p.Kind != ParameterKind.Fixed) is not null)
            throw at.Error("parameters.epochs", $"cannot be searched with {Field}: every trial trains up to the same epochs, and the rule stops the unpromising ones");
        var epochsWritten = at.Contains("trial.epochs") || parameters.Any(p => p.Path == "epochs");
        var maxEpochs = section.MaxEpochs ?? trial.Epochs;
        Check(maxEpochs >= 1, "maxEpochs", "must be ≥ 1");
        if (section.MaxEpochs is { } given && given != trial.Epochs)
        {
            Check(!epochsWritten, "maxEpochs", $"{N(given)} differs from the trial's epochs ({N(trial.Epochs)}): give one of them");
            trial.Epochs = given;
        }

        if (method == EarlyStoppingSettings.Median)
        {
            foreach (var (value, name) in new (int?, string)[] { (section.ReductionFactor, "reductionFactor"), (section.MinEpochs, "minEpochs"), (section.Rungs, "rungs"), (section.Brackets, "brackets") })
                Check(value is null, name, "applies to asha and hyperband, not to the median rule");
            var grace = section.GraceEpochs ?? 1;
            Check(grace >= 1, "graceEpochs", "must be ≥ 1");
            Check(grace < maxEpochs, "graceEpochs", $"{N(grace)} leaves no epoch to stop at: it must be below the trial's epochs ({N(maxEpochs)})");
            var minTrials = section.MinTrials ?? 3;
            Check(minTrials >= 1, "minTrials", "must be ≥ 1");
            return new EarlyStoppingSettings { Method = method, MaxEpochs = maxEpochs, GraceEpochs = grace, MinTrials = minTrials };
        }

        Check(section.GraceEpochs is null, "graceEpochs", "applies to the median rule; asha and hyperband start at minEpochs");
        Check(section.MinTrials is null, "minTrials", "applies to the median rule");
        var eta = section.ReductionFactor ?? 3;
        Check(eta >= 2, "reductionFactor", $"{N(eta)} must be ≥ 2: each rung keeps the best 1/reductionFactor of the trials");
        var minEpochs = section.MinEpochs ?? 1;
        Check(minEpochs >= 1, "minEpochs", "must be ≥ 1");
        Check(minEpochs < maxEpochs, "minEpochs",
              $"{N(minEpochs)} leaves no rung: the first rung must come before the last epoch ({N(maxEpochs)}); lower minEpochs or raise the epochs");
        var fit = EarlyStoppingSettings.RungsBelow(minEpochs, eta, maxEpochs);
        var rungs = section.Rungs ?? fit;
        Check(rungs >= 1, "rungs", "must be ≥ 1");
        if (rungs > fit)
        {
            var last = minEpochs * Math.Pow(eta, rungs - 1);
            throw at.Error($"{Field}.rungs",
                $"{N(rungs)} rungs put the last at epoch {last.ToString("0", CultureInfo.InvariantCulture)}, at or beyond the trial's epochs ({N(maxEpochs)}): at most {N(fit)} fit (minEpochs·reductionFactor^k below the epochs)");
        }
        var brackets = section.Brackets ?? (method == EarlyStoppingSettings.Hyperband ? rungs : 1);
        Check(section.Brackets is null || method == EarlyStoppingSettings.Hyperband, "brackets", "applies to hyperband (asha is one bracket)");
        Check(brackets >= 1, "brackets", "must be ≥ 1");
        Check(brackets <= rungs + 1, "brackets",
              $"{N(brackets)} is more than the rungs allow: bracket b starts at rung b, so at most {N(rungs + 1)} (the last one stopping nothing)");
        return new EarlyStoppingSettings
        {
            Method = method, ReductionFactor = eta, MinEpochs = minEpochs, MaxEpochs = maxEpochs, Rungs = rungs, Brackets = brackets,
        };
    }
}

using Orchestrator.Specs;
using Orchestrator.Sweeps;
using Orchestrator.Trials;

namespace Orchestrator.Worker.Plugins;

/// <summary>
/// What can be known about a sweep's plug-ins before it is submitted: each file exists, is a .NET
/// assembly built against this SDK major, exports the model or data set named, and that export can be
/// created. The CLI runs it (the coordinator never loads user code), so a bad plug-in is refused at
/// submit, as a <see cref="SpecException"/> naming the field.
/// </summary>
public static class PluginCheck
{
    /// <summary>Checks the plug-ins of the sweep in <paramref name="yaml"/>; a sweep that does not parse is left to the coordinator's validation.</summary>
    public static void Sweep(string yaml, string? fileName)
    {
        TrialSpec trial;
        try
        {
            trial = ValidatedSweep.Parse(yaml, fileName, SweepLimits.Default).BaseTrial;
        }
        catch (SpecException)
        {
            return;
        }
        Trial(trial, fileName);
    }

    /// <summary>Checks the plug-ins a trial names (see <see cref="Sweep"/>).</summary>
    public static void Trial(TrialSpec trial, string? fileName)
    {
        ArgumentNullException.ThrowIfNull(trial);
        if (trial.Model.Plugin is not null) Load(new TrialSpec { Model = trial.Model }, "model.plugin", fileName);
        if (trial.Data.Plugin is not null) Load(new TrialSpec { Data = trial.Data }, "data.plugin", fileName);
        if (trial.Metrics is { Count: > 0 }) Load(new TrialSpec { Metrics = trial.Metrics }, "trial.metrics", fileName);
    }

    private static void Load(TrialSpec only, string field, string? fileName)
    {
        try
        {
            using var plugins = TrialPlugins.Load(only);
        }
        catch (PluginException e)
        {
            throw new SpecException(fileName, null, field, e.Message);
        }
    }
}

using Orchestrator.Trials;

namespace Orchestrator.Worker.Training;

/// <summary>
/// The learning rate as a function of training progress. Step-driven schedules are pure functions
/// of the global step, so a resumed run rebuilds them from the step count alone; the plateau
/// schedule carries a small state (<see cref="PlateauState"/>) that checkpoints save.
/// </summary>
public sealed class LrSchedule
{
    private readonly ScheduleSpec _spec;
    private readonly double _peak;
    private readonly long _stepsPerEpoch;
    private readonly long _totalSteps;

    public LrSchedule(ScheduleSpec spec, double peakLr, long stepsPerEpoch, int epochs)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(stepsPerEpoch);
        _spec = spec;
        _peak = peakLr;
        _stepsPerEpoch = stepsPerEpoch;
        _totalSteps = stepsPerEpoch * epochs;
        Plateau = new PlateauState(1.0, double.PositiveInfinity, 0);
    }

    /// <summary>Reduce-on-plateau bookkeeping: the current multiplier, best validation loss, epochs without improvement.</summary>
    public PlateauState Plateau { get; set; }

    /// <summary>The rate for the optimiser step with 0-based index <paramref name="step"/>.</summary>
    public double At(long step)
    {
        var warmupSteps = (long)Math.Round(_spec.WarmupEpochs * _stepsPerEpoch);
        double Warm(double lr) => warmupSteps > 0 && step < warmupSteps ? lr * (step + 1) / warmupSteps : lr;
        switch (_spec.Name)
        {
            case "constant":
                return Warm(_peak);
            case "step":
                return Warm(_peak * Math.Pow(_spec.Gamma, step / _stepsPerEpoch / _spec.StepEpochs));
            case "cosine":
            {
                if (step < warmupSteps) return Warm(_peak);
                var span = Math.Max(1, _totalSteps - warmupSteps);
                var t = Math.Min(1.0, (double)(step - warmupSteps) / span);
                var floor = _peak * _spec.MinLrFraction;
                return floor + (_peak - floor) * 0.5 * (1 + Math.Cos(Math.PI * t));
            }
            case "onecycle":
            {
                // Cosine rise from peak/25 to the peak, then cosine fall to peak/1e4 (PyTorch's OneCycleLR defaults).
                var rise = Math.Max(1, (long)(_spec.PctStart * _totalSteps));
                double start = _peak / 25, end = _peak / 1e4;
                if (step < rise)
                    return Cos(start, _peak, (double)step / rise);
                return Cos(_peak, end, Math.Min(1.0, (double)(step - rise) / Math.Max(1, _totalSteps - rise)));
            }
            case "plateau":
                return Warm(_peak * Plateau.Scale);
            default:
                throw new ArgumentException($"unknown schedule '{_spec.Name}'");
        }
    }

    /// <summary>Feeds an epoch's validation loss to the plateau schedule (no-op for the others).</summary>
    public void OnEpochEnd(double validationLoss)
    {
        if (_spec.Name != "plateau") return;
        var p = Plateau;
        if (validationLoss < p.Best * (1 - 1e-4))
        {
            Plateau = p with { Best = validationLoss, BadEpochs = 0 };
        }
        else if (p.BadEpochs + 1 > _spec.Patience)
        {
            Plateau = new PlateauState(p.Scale * _spec.Factor, p.Best, 0);
        }
        else
        {
            Plateau = p with { BadEpochs = p.BadEpochs + 1 };
        }
    }

    private static double Cos(double from, double to, double t) => to + (from - to) * 0.5 * (1 + Math.Cos(Math.PI * t));
}

/// <summary>State of reduce-on-plateau, saved in checkpoints.</summary>
public sealed record PlateauState(double Scale, double Best, int BadEpochs);

namespace Orchestrator.Worker.Training;

/// <summary>
/// Settings of a learning-rate range test (L. Smith, "Cyclical Learning Rates for Training Neural
/// Networks", 2017): the rate grows exponentially from <see cref="StartLr"/> to <see cref="EndLr"/>
/// over <see cref="Steps"/> optimiser steps, one batch each, while the loss is watched.
/// </summary>
public sealed record LrRangeOptions
{
    /// <summary>Fewer points than this make no curve to read a rate from.</summary>
    public const int MinSteps = 10;

    public double StartLr { get; init; } = 1e-7;
    public double EndLr { get; init; } = 10;
    public int Steps { get; init; } = 200;
    /// <summary>Weight of the past in the exponential moving average of the loss (fastai's 0.98).</summary>
    public double Smoothing { get; init; } = 0.98;
    /// <summary>The test stops once the smoothed loss exceeds this many times the best so far.</summary>
    public double DivergenceFactor { get; init; } = 4;

    /// <summary>Throws <see cref="ArgumentException"/> naming the setting that makes no sense, in the CLI's words.</summary>
    public void Validate()
    {
        if (!(StartLr > 0) || !double.IsFinite(StartLr))
            throw new ArgumentException($"--start-lr must be a positive number (got {StartLr:G})");
        if (!(EndLr > StartLr) || !double.IsFinite(EndLr))
            throw new ArgumentException($"--end-lr ({EndLr:G}) must be greater than --start-lr ({StartLr:G})");
        if (Steps < MinSteps)
            throw new ArgumentException($"--steps must be at least {MinSteps} (got {Steps}): fewer points make no curve");
        if (Smoothing is < 0 or >= 1) throw new ArgumentException($"the smoothing must be in [0, 1) (got {Smoothing:G})");
        if (!(DivergenceFactor > 1)) throw new ArgumentException($"the divergence factor must be above 1 (got {DivergenceFactor:G})");
    }

    /// <summary>The rate at step <paramref name="step"/> (0-based): the last step reaches <see cref="EndLr"/>.</summary>
    public double LrAt(int step) => StartLr * Math.Pow(EndLr / StartLr, step / (double)(Steps - 1));
}

/// <summary>One step of the range test: the rate used, the batch's loss and the smoothed loss.</summary>
public readonly record struct LrRangePoint(int Step, double LearningRate, double Loss, double SmoothedLoss);

/// <summary>
/// What the range test found. <see cref="SuggestedLr"/> is <see cref="MinLossLr"/> / 10: an order
/// of magnitude below the rate of the lowest smoothed loss, the rule of thumb of Smith's paper and
/// of fastai's <c>lr_min</c>. It is more robust than the steepest descent (<see cref="SteepestLr"/>,
/// also reported), whose position on a noisy curve can jump by decades from one seed to the next.
/// </summary>
public sealed record LrRangeResult(
    IReadOnlyList<LrRangePoint> Points,
    bool Diverged,
    double SuggestedLr,
    double MinLossLr,
    double SteepestLr,
    double MinSmoothedLoss);

/// <summary>
/// The bookkeeping of a range test, free of tensors: exponential smoothing with bias correction,
/// divergence, and reading the suggested rate off the curve.
/// </summary>
public sealed class LrRangeCurve(LrRangeOptions options)
{
    private readonly List<LrRangePoint> _points = [];
    private double _average;
    private double _best = double.PositiveInfinity;

    public IReadOnlyList<LrRangePoint> Points => _points;
    public bool Diverged { get; private set; }
    /// <summary>True once every step ran or the loss diverged.</summary>
    public bool Done => Diverged || _points.Count >= options.Steps;
    /// <summary>The rate the next step should use.</summary>
    public double NextLr => options.LrAt(_points.Count);

    /// <summary>Records the loss of the step that ran at <see cref="NextLr"/>.</summary>
    public LrRangePoint Add(double loss)
    {
        if (Done) throw new InvalidOperationException("the range test is already over");
        var step = _points.Count;
        var lr = options.LrAt(step);
        double smoothed;
        if (double.IsFinite(loss))
        {
            _average = options.Smoothing * _average + (1 - options.Smoothing) * loss;
            // Bias correction: the average starts at 0, so early values are scaled up to the loss's level.
            smoothed = _average / (1 - Math.Pow(options.Smoothing, step + 1));
        }
        else smoothed = double.PositiveInfinity;
        var point = new LrRangePoint(step, lr, loss, smoothed);
        _points.Add(point);
        if (smoothed < _best) _best = smoothed;
        if (!double.IsFinite(smoothed) || smoothed > options.DivergenceFactor * _best) Diverged = true;
        return point;
    }

    /// <summary>The curve read so far. Needs at least one finite point.</summary>
    public LrRangeResult Result()
    {
        // The diverged tail says nothing about where the minimum is; keep it out of the reading.
        var usable = _points.Where(p => double.IsFinite(p.SmoothedLoss)).ToList();
        if (usable.Count == 0) throw new InvalidOperationException("the loss was not finite at any step; lower --start-lr");
        var min = usable.MinBy(p => p.SmoothedLoss);
        return new LrRangeResult(_points.ToArray(), Diverged, min.LearningRate / 10, min.LearningRate, Steepest(usable, min.Step), min.SmoothedLoss);
    }

    /// <summary>
    /// The rate where the smoothed loss falls fastest against log(rate), looked for before the
    /// minimum (central differences; one-sided at the ends).
    /// </summary>
    private static double Steepest(List<LrRangePoint> points, int minStep)
    {
        var end = points.FindIndex(p => p.Step == minStep);
        if (end < 2) return points[end].LearningRate;
        var best = 0;
        var bestSlope = double.PositiveInfinity;
        for (var i = 0; i <= end; i++)
        {
            int a = Math.Max(0, i - 1), b = Math.Min(end, i + 1);
            var slope = (points[b].SmoothedLoss - points[a].SmoothedLoss)
                        / (Math.Log(points[b].LearningRate) - Math.Log(points[a].LearningRate));
            if (slope < bestSlope)
            {
                bestSlope = slope;
                best = i;
            }
        }
        return points[best].LearningRate;
    }
}

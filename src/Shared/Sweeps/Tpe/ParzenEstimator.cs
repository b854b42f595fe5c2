using System.Globalization;

namespace Orchestrator.Sweeps.Tpe;

/// <summary>
/// One searched parameter as TPE models it: a density fitted to some observed values, sampled
/// and compared between the good results (l) and the bad ones (g). Parameters are modelled
/// independently of each other (the "independent" TPE of Bergstra et al., 2011).
/// </summary>
internal abstract class ParameterModel
{
    public static ParameterModel For(SweepParameter parameter) => parameter.Kind == ParameterKind.Categorical
        ? new CategoricalModel(parameter)
        : new NumericModel(parameter);

    /// <summary>
    /// Draws <paramref name="candidates"/> values from the good values' density l and returns
    /// the first one with the highest l(x)/g(x). Observed values this parameter cannot read (a
    /// warm start's value outside the space) are left out.
    /// </summary>
    public abstract string Suggest(IEnumerable<string> good, IEnumerable<string> bad, int candidates, SplitMix64 random);
}

/// <summary>Choices: smoothed frequencies (each choice starts with a count of one).</summary>
internal sealed class CategoricalModel(SweepParameter parameter) : ParameterModel
{
    public override string Suggest(IEnumerable<string> good, IEnumerable<string> bad, int candidates, SplitMix64 random)
    {
        var l = Weights(good);
        var g = Weights(bad);
        double lTotal = l.Sum(), gTotal = g.Sum();
        var best = -1;
        var bestScore = double.NegativeInfinity;
        for (var i = 0; i < candidates; i++)
        {
            var c = Draw(l, lTotal, random);
            var score = Math.Log(l[c] / lTotal) - Math.Log(g[c] / gTotal);
            if (score > bestScore)
            {
                best = c;
                bestScore = score;
            }
        }
        return parameter.Values[best];
    }

    private double[] Weights(IEnumerable<string> values)
    {
        var w = Enumerable.Repeat(1.0, parameter.Values.Count).ToArray();
        foreach (var v in values)
        {
            var i = IndexOf(v);
            if (i >= 0) w[i]++;
        }
        return w;
    }

    private int IndexOf(string value)
    {
        for (var i = 0; i < parameter.Values.Count; i++)
            if (parameter.Values[i] == value) return i;
        return -1;
    }

    private static int Draw(double[] weights, double total, SplitMix64 random)
    {
        var u = random.NextDouble() * total;
        for (var i = 0; i < weights.Length - 1; i++)
        {
            u -= weights[i];
            if (u < 0) return i;
        }
        return weights.Length - 1;
    }
}

/// <summary>
/// A range, modelled on a line where its prior is uniform: the logarithm for log-uniform ranges,
/// the step index for stepped ones, the value widened by half a unit for whole numbers (so that
/// every integer owns the same width). Samples are mapped back and formatted as random search
/// formats them.
/// </summary>
internal sealed class NumericModel : ParameterModel
{
    private readonly SweepParameter _p;
    private readonly double _lo;
    private readonly double _hi;
    private readonly long _steps;

    public NumericModel(SweepParameter parameter)
    {
        _p = parameter;
        if (parameter.GridCount is { } count)
        {
            _steps = count > long.MaxValue ? long.MaxValue : (long)count;
            (_lo, _hi) = (-0.5, _steps - 0.5);
        }
        else if (parameter.IsInteger)
            (_lo, _hi) = parameter.LogUniform ? (Math.Log(parameter.Min), Math.Log(parameter.Max + 1)) : (parameter.Min - 0.5, parameter.Max + 0.5);
        else
            (_lo, _hi) = parameter.LogUniform ? (Math.Log(parameter.Min), Math.Log(parameter.Max)) : (parameter.Min, parameter.Max);
    }

    public override string Suggest(IEnumerable<string> good, IEnumerable<string> bad, int candidates, SplitMix64 random)
    {
        var l = ParzenMixture.Fit(Read(good), _lo, _hi);
        var g = ParzenMixture.Fit(Read(bad), _lo, _hi);
        var best = double.NaN;
        var bestScore = double.NegativeInfinity;
        for (var i = 0; i < candidates; i++)
        {
            var t = l.Sample(random);
            var score = l.LogDensity(t) - g.LogDensity(t);
            if (score > bestScore || double.IsNaN(best))
            {
                best = t;
                bestScore = score;
            }
        }
        return Text(best);
    }

    private double[] Read(IEnumerable<string> values) => [.. values.Select(Line).Where(t => !double.IsNaN(t))];

    /// <summary>A value's place on the model's line, clamped into the range; NaN when unreadable.</summary>
    private double Line(string text)
    {
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var x) || !double.IsFinite(x)) return double.NaN;
        double t;
        if (_steps > 0) t = Math.Round((x - _p.Min) / _p.Step!.Value);
        else if (_p.LogUniform)
        {
            if (x <= 0) return double.NaN;
            // Log-uniform integers are floor(exp(t)): the integer v owns [ln v, ln(v+1)); take its middle.
            t = Math.Log(_p.IsInteger ? x + 0.5 : x);
        }
        else t = x;
        return Math.Clamp(t, _lo, _hi);
    }

    private string Text(double t)
    {
        if (_steps > 0) return _p.GridValue((long)Math.Clamp(Math.Round(t), 0, _steps - 1));
        if (_p.IsInteger)
        {
            var v = _p.LogUniform ? Math.Floor(Math.Exp(t)) : Math.Round(t);
            return _p.FormatBound(Math.Clamp(v, _p.Min, _p.Max));
        }
        var x = _p.LogUniform ? Math.Exp(t) : t;
        // Six significant digits, as random search writes its samples.
        x = double.Parse(x.ToString("G6", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
        return TrialField.FormatNumber(Math.Clamp(x, _p.Min, _p.Max));
    }
}

/// <summary>
/// A Parzen estimator on [lo, hi]: an equal-weight mixture of Gaussians truncated to the range,
/// one per observed point plus one wide prior component (centre of the range, σ = its width) that
/// keeps every region possible. A point's bandwidth is the larger gap to its neighbours (or to the
/// bound), clipped to [width / min(100, n + 1), width], as in Bergstra et al.
/// </summary>
internal sealed class ParzenMixture
{
    private const int MaxRejections = 64;
    private readonly double[] _mu;
    private readonly double[] _sigma;
    private readonly double[] _logMass;
    private readonly double _lo;
    private readonly double _hi;

    private ParzenMixture(double[] mu, double[] sigma, double lo, double hi)
    {
        (_mu, _sigma, _lo, _hi) = (mu, sigma, lo, hi);
        _logMass = new double[mu.Length];
        for (var i = 0; i < mu.Length; i++)
            _logMass[i] = Math.Log(Math.Max(NormalCdf((hi - mu[i]) / sigma[i]) - NormalCdf((lo - mu[i]) / sigma[i]), 1e-300));
    }

    public int Components => _mu.Length;

    public static ParzenMixture Fit(IReadOnlyList<double> points, double lo, double hi)
    {
        var width = hi - lo;
        var sorted = points.Order().ToArray();
        var n = sorted.Length;
        var minSigma = width / Math.Min(100, n + 1);
        var mu = new double[n + 1];
        var sigma = new double[n + 1];
        for (var i = 0; i < n; i++)
        {
            var left = sorted[i] - (i > 0 ? sorted[i - 1] : lo);
            var right = (i < n - 1 ? sorted[i + 1] : hi) - sorted[i];
            mu[i] = sorted[i];
            sigma[i] = Math.Clamp(Math.Max(left, right), minSigma, width);
        }
        mu[n] = lo + width / 2;
        sigma[n] = width;
        return new ParzenMixture(mu, sigma, lo, hi);
    }

    /// <summary>A draw: a component chosen uniformly, then a normal deviate from it, redrawn until it falls in the range.</summary>
    public double Sample(SplitMix64 random)
    {
        var i = (int)random.NextInt64(_mu.Length);
        var t = _mu[i];
        for (var k = 0; k < MaxRejections; k++)
        {
            t = _mu[i] + _sigma[i] * StandardNormal(random);
            if (t >= _lo && t <= _hi) return t;
        }
        return Math.Clamp(t, _lo, _hi);
    }

    /// <summary>The log of the mixture's density at <paramref name="t"/>.</summary>
    public double LogDensity(double t)
    {
        // log Σ w·N(t; μ, σ)/mass, summed in log space so that far-away components do not underflow to zero.
        var terms = new double[_mu.Length];
        var max = double.NegativeInfinity;
        for (var i = 0; i < _mu.Length; i++)
        {
            var z = (t - _mu[i]) / _sigma[i];
            terms[i] = -0.5 * z * z - Math.Log(_sigma[i]) - 0.5 * Math.Log(2 * Math.PI) - _logMass[i];
            max = Math.Max(max, terms[i]);
        }
        var sum = 0.0;
        foreach (var term in terms) sum += Math.Exp(term - max);
        return max + Math.Log(sum / _mu.Length);
    }

    /// <summary>Box–Muller, one deviate per pair of uniforms (the second is dropped to keep the draws per sample fixed).</summary>
    private static double StandardNormal(SplitMix64 random)
    {
        var u1 = 1 - random.NextDouble();
        var u2 = random.NextDouble();
        return Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }

    /// <summary>Φ(x) from the complementary error function's Chebyshev fit (fractional error below 1.2e-7).</summary>
    internal static double NormalCdf(double x)
    {
        var z = -x / Math.Sqrt(2);
        var a = Math.Abs(z);
        var t = 1 / (1 + 0.5 * a);
        var erfc = t * Math.Exp(-a * a - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
                   t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
        return 0.5 * (z >= 0 ? erfc : 2 - erfc);
    }
}

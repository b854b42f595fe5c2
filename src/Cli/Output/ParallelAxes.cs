using System.Globalization;
using Orchestrator.Sweeps;

namespace Orchestrator.Cli.Output;

/// <summary>
/// One vertical axis of a parallel-coordinates plot: how a value maps to a height in [0, 1] and
/// which labelled ticks the axis carries. Numbers are placed linearly, or by their logarithm where
/// the search space is log-uniform; categories (and values that are not numbers) are evenly spaced
/// in the order the sweep file lists them.
/// </summary>
internal sealed class ParallelAxis
{
    private readonly Func<string, double?> _position;

    private ParallelAxis(string name, bool log, IReadOnlyList<(double Position, string Label)> ticks, Func<string, double?> position)
    {
        Name = name;
        IsLog = log;
        Ticks = ticks;
        _position = position;
    }

    public string Name { get; }
    public bool IsLog { get; }
    public IReadOnlyList<(double Position, string Label)> Ticks { get; }

    /// <summary>The height of <paramref name="value"/> on this axis in [0, 1]; null when it has none (a trial without the value).</summary>
    public double? Position(string? value) => value is null ? null : _position(value);

    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    private static bool IsNumber(string s, out double d) => double.TryParse(s, NumberStyles.Float, Inv, out d) && double.IsFinite(d);

    /// <summary>
    /// The axis of a swept parameter. <paramref name="parameter"/> (from the sweep file) gives its
    /// kind and order; without it the kind is read off the values seen.
    /// </summary>
    public static ParallelAxis For(string path, SweepParameter? parameter, IReadOnlyCollection<string> seen)
    {
        if (parameter is { Kind: ParameterKind.Categorical } p) return Categories(path, p.Values.Concat(seen).Distinct().ToList());
        if (seen.Count > 0 && seen.All(s => IsNumber(s, out _)))
        {
            var numbers = seen.Select(s => double.Parse(s, Inv)).ToList();
            double lo = numbers.Min(), hi = numbers.Max();
            if (parameter is { Kind: ParameterKind.Range } r)
            {
                lo = Math.Min(lo, r.Min);
                hi = Math.Max(hi, r.Max);
            }
            return Numeric(path, lo, hi, log: parameter is { LogUniform: true } && lo > 0);
        }
        return Categories(path, seen.Order(StringComparer.Ordinal).ToList());
    }

    /// <summary>A numeric axis from <paramref name="lo"/> to <paramref name="hi"/> (the objective's, say).</summary>
    public static ParallelAxis Numeric(string name, double lo, double hi, bool log = false)
    {
        Func<double, double> f = log ? Math.Log10 : x => x;
        double a = f(lo), b = f(hi);
        var span = b - a;
        double Place(double x) => span > 0 ? Math.Clamp((f(x) - a) / span, 0, 1) : 0.5;
        var ticks = new List<(double, string)>();
        if (span > 0)
        {
            for (var i = 0; i <= 4; i++)
            {
                var t = a + span * i / 4;
                ticks.Add((i / 4.0, (log ? Math.Pow(10, t) : t).ToString("G3", Inv)));
            }
        }
        else ticks.Add((0.5, lo.ToString("G4", Inv)));
        return new ParallelAxis(name, log, ticks, s => IsNumber(s, out var d) ? Place(d) : null);
    }

    private static ParallelAxis Categories(string name, IReadOnlyList<string> values)
    {
        double Place(int i) => values.Count == 1 ? 0.5 : (double)i / (values.Count - 1);
        var index = values.Select((v, i) => (v, i)).ToDictionary(x => x.v, x => x.i, StringComparer.Ordinal);
        return new ParallelAxis(name, log: false, values.Select((v, i) => (Place(i), v)).ToList(),
            s => index.TryGetValue(s, out var i) ? Place(i) : null);
    }
}

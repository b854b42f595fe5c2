using System.Globalization;
using System.Numerics;

namespace Orchestrator.Sweeps;

/// <summary>How a sweep parameter gets its value.</summary>
public enum ParameterKind
{
    /// <summary>One value for every trial (a plain scalar in the file).</summary>
    Fixed,
    /// <summary>One of a list (<c>{values: [...]}</c>).</summary>
    Categorical,
    /// <summary>A number between bounds (<c>{min, max}</c>, optionally with a step, a distribution and a type).</summary>
    Range,
}

/// <summary>One entry of a sweep's <c>parameters</c>: which trial field it sets and which values it may take.</summary>
public sealed class SweepParameter
{
    // Continuous samples keep 6 significant digits: they read well in tables, and the last bits of
    // Math.Exp/Math.Log (which may differ between platforms) cannot change the text of a sample.
    private const string SampleFormat = "G6";

    internal SweepParameter(TrialField field, ParameterKind kind, IReadOnlyList<string> values,
        double min = 0, double max = 0, double? step = null, bool logUniform = false, bool isInteger = false)
    {
        Field = field;
        Kind = kind;
        Values = values;
        Min = min;
        Max = max;
        Step = step;
        LogUniform = logUniform;
        IsInteger = isInteger;
        GridCount = kind switch
        {
            ParameterKind.Fixed => BigInteger.One,
            ParameterKind.Categorical => values.Count,
            _ when step is { } s => StepCount(min, max, s, isInteger),
            _ => null,
        };
    }

    /// <summary>The trial field's dotted path, e.g. <c>optimizer.lr</c>.</summary>
    public string Path => Field.Path;

    /// <summary>The trial field it sets.</summary>
    public TrialField Field { get; }

    /// <summary>Fixed, categorical or range.</summary>
    public ParameterKind Kind { get; }

    /// <summary>Fixed: the one value; categorical: the choices, canonical, in file order; range: empty.</summary>
    public IReadOnlyList<string> Values { get; }

    /// <summary>Range: the lower bound (inclusive).</summary>
    public double Min { get; }

    /// <summary>Range: the upper bound (inclusive for whole numbers and steps; continuous samples lie below it).</summary>
    public double Max { get; }

    /// <summary>Range: the spacing of the values min, min+step, … ≤ max; null for a continuous range.</summary>
    public double? Step { get; }

    /// <summary>Range: sample uniformly in log space.</summary>
    public bool LogUniform { get; }

    /// <summary>Range: whole numbers only.</summary>
    public bool IsInteger { get; }

    /// <summary>How many values a grid visits; null for a continuous range (grid search cannot enumerate it).</summary>
    public BigInteger? GridCount { get; }

    /// <summary>Grid value number <paramref name="k"/> (0-based, in ascending or file order).</summary>
    public string GridValue(long k)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        if (GridCount is not { } count || k >= count) throw new ArgumentOutOfRangeException(nameof(k), k, $"{Path} has {GridCount?.ToString(CultureInfo.InvariantCulture) ?? "no"} grid values");
        return Kind switch
        {
            ParameterKind.Fixed => Values[0],
            ParameterKind.Categorical => Values[(int)k],
            _ => StepValue(k),
        };
    }

    /// <summary>A random value, drawing from <paramref name="random"/> (fixed parameters draw nothing).</summary>
    public string Sample(SplitMix64 random)
    {
        switch (Kind)
        {
            case ParameterKind.Fixed:
                return Values[0];
            case ParameterKind.Categorical:
                return Values[(int)random.NextInt64(Values.Count)];
        }
        if (GridCount is { } count)
            return StepValue(random.NextInt64(count > long.MaxValue ? long.MaxValue : (long)count));
        if (IsInteger)
        {
            var lo = (long)Min;
            var hi = (long)Max;
            if (!LogUniform) return Format(lo + random.NextInt64(hi - lo + 1));
            // Log-uniform over [min, max+1) then floored: every integer gets the mass of its log-width.
            var v = Math.Floor(Math.Exp(Lerp(Math.Log(Min), Math.Log(Max + 1), random.NextDouble())));
            return Format((long)Math.Clamp(v, Min, Max));
        }
        var u = random.NextDouble();
        var x = LogUniform ? Math.Exp(Lerp(Math.Log(Min), Math.Log(Max), u)) : Lerp(Min, Max, u);
        x = double.Parse(x.ToString(SampleFormat, CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
        return TrialField.FormatNumber(Math.Clamp(x, Min, Max));
    }

    private static double Lerp(double a, double b, double u) => a + (b - a) * u;

    private string StepValue(long k)
    {
        var step = Step!.Value;
        if (IsInteger) return Format((long)Min + k * (long)step);
        try
        {
            // Decimal arithmetic keeps 0.1 + 2 × 0.1 at 0.3 rather than 0.30000000000000004.
            return TrialField.FormatNumber((double)((decimal)Min + k * (decimal)step));
        }
        catch (OverflowException)
        {
            return TrialField.FormatNumber(Min + k * step);
        }
    }

    /// <summary>A bound as the field's text: "32" for an integer field, "0.5" for a number.</summary>
    internal string FormatBound(double v) => Field.Kind == FieldKind.Integer ? Format((long)v) : TrialField.FormatNumber(v);

    private string Format(long v) => Field.Kind == FieldKind.Integer
        ? v.ToString(CultureInfo.InvariantCulture)
        : TrialField.FormatNumber(v);

    /// <summary>The number of values min, min+step, … ≤ max, computed rather than counted (a step of 1e-9 over [0, 1] is instant).</summary>
    internal static BigInteger StepCount(double min, double max, double step, bool isInteger)
    {
        if (isInteger) return new BigInteger(Math.Floor((max - min) / step)) + 1;
        try
        {
            return new BigInteger(decimal.Floor(((decimal)max - (decimal)min) / (decimal)step)) + 1;
        }
        catch (Exception e) when (e is OverflowException or DivideByZeroException)
        {
            // Outside decimal's range: doubles, with a little slack so that max itself is counted.
            return new BigInteger(Math.Floor((max - min) / step * (1 + 1e-12))) + 1;
        }
    }
}

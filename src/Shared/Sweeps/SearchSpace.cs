using System.Numerics;

namespace Orchestrator.Sweeps;

/// <summary>
/// The parameters a sweep varies, in file order, and the two ways of picking values from them:
/// the grid's cartesian product and seeded random samples. A sample maps each searched
/// parameter's path to its value as invariant-culture text (fixed parameters are part of the
/// sweep's base trial, not of samples).
/// </summary>
public sealed class SearchSpace
{
    internal SearchSpace(IReadOnlyList<SweepParameter> parameters)
    {
        Parameters = parameters;
        Searched = [.. parameters.Where(p => p.Kind != ParameterKind.Fixed)];
        // The product of the counts, computed exactly without visiting a single point; any
        // continuous range leaves the grid undefined.
        if (Searched.All(p => p.GridCount is not null))
            GridSize = Searched.Aggregate(BigInteger.One, (size, p) => size * p.GridCount!.Value);
    }

    /// <summary>Every parameter of the file, fixed ones included, in file order.</summary>
    public IReadOnlyList<SweepParameter> Parameters { get; }

    /// <summary>The parameters that vary (categorical and range), in file order.</summary>
    public IReadOnlyList<SweepParameter> Searched { get; }

    /// <summary>The number of grid points; null when a range has no step.</summary>
    public BigInteger? GridSize { get; }

    /// <summary>
    /// Grid point <paramref name="index"/> of the cartesian product, in mixed radix: the first
    /// parameter varies slowest, the last fastest (like nested loops written in file order).
    /// </summary>
    public IReadOnlyDictionary<string, string> GridPoint(long index)
    {
        if (GridSize is not { } size) throw new InvalidOperationException("the search space has a range without a step: it has no grid");
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        if (index >= size) throw new ArgumentOutOfRangeException(nameof(index), index, $"the grid has {size} points");
        var digits = new long[Searched.Count];
        for (var i = Searched.Count - 1; i >= 0; i--)
        {
            var n = (long)Searched[i].GridCount!.Value;
            digits[i] = index % n;
            index /= n;
        }
        var point = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < Searched.Count; i++) point[Searched[i].Path] = Searched[i].GridValue(digits[i]);
        return point;
    }

    /// <summary>A random sample: one draw per searched parameter, in file order, so that a seed fixes every sample.</summary>
    public IReadOnlyDictionary<string, string> Sample(SplitMix64 random)
    {
        var point = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var p in Searched) point[p.Path] = p.Sample(random);
        return point;
    }
}

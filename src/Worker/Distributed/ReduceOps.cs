using System.Numerics.Tensors;

namespace Orchestrator.Worker.Distributed;

/// <summary>What an all-reduce computes element-wise.</summary>
public enum ReduceOperation
{
    /// <summary>Sum over ranks divided by the number of ranks (gradient averaging).</summary>
    Mean,

    /// <summary>Plain sum over ranks.</summary>
    Sum,
}

/// <summary>
/// A reduce kernel over spans. Called through <c>where TOp : struct, IReduceOp</c> so the JIT
/// specialises the ring loop per operation and the calls inline.
/// </summary>
public interface IReduceOp
{
    /// <summary>Folds <paramref name="incoming"/> into <paramref name="accumulator"/> (same length).</summary>
    static abstract void Combine(ReadOnlySpan<float> incoming, Span<float> accumulator);

    /// <summary>Turns a fully combined segment into the result, once, on the rank that owns it.</summary>
    static abstract void Finish(Span<float> reduced, int worldSize);
}

/// <summary>Element-wise sum (SIMD via <see cref="TensorPrimitives"/>).</summary>
public readonly struct SumOp : IReduceOp
{
    /// <inheritdoc />
    public static void Combine(ReadOnlySpan<float> incoming, Span<float> accumulator) =>
        TensorPrimitives.Add(incoming, accumulator, accumulator);

    /// <inheritdoc />
    public static void Finish(Span<float> reduced, int worldSize) { }
}

/// <summary>Element-wise sum, then one division by the world size.</summary>
public readonly struct MeanOp : IReduceOp
{
    /// <inheritdoc />
    public static void Combine(ReadOnlySpan<float> incoming, Span<float> accumulator) =>
        TensorPrimitives.Add(incoming, accumulator, accumulator);

    /// <summary>
    /// Divides rather than multiplying by 1/W: an exactly representable sum then gives the
    /// correctly rounded mean, which is what a reader (and the tests) would compute by hand.
    /// </summary>
    public static void Finish(Span<float> reduced, int worldSize) =>
        TensorPrimitives.Divide(reduced, worldSize, reduced);
}

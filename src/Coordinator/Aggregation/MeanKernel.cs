using System.Buffers;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using Orchestrator.Numerics;

namespace Orchestrator.Coordinator.Aggregation;

/// <summary>The mean of W fp32 parts in a fixed order, with SIMD (<see cref="TensorPrimitives"/>).</summary>
internal static class MeanKernel
{
    /// <summary>
    /// destination = (parts[0] + parts[1] + … + parts[W−1]) / W, summed left to right. A power-of-two
    /// W folds the division into the last addition as a multiplication by 1/W: that scaling is exact,
    /// so the bits equal those of add-then-divide, and it saves one pass over the chunk.
    /// </summary>
    public static void Mean(ReadOnlySpan<GradientPart> parts, Span<float> destination)
    {
        var w = parts.Length;
        if (w == 1)
        {
            Floats(parts[0]).CopyTo(destination);
            return;
        }
        var powerOfTwo = (w & (w - 1)) == 0;
        ReadOnlySpan<float> accumulated = Floats(parts[0]);
        for (var r = 1; r < w; r++)
        {
            if (r == w - 1 && powerOfTwo)
            {
                TensorPrimitives.AddMultiply(accumulated, Floats(parts[r]), 1f / w, destination);
                return;
            }
            TensorPrimitives.Add(accumulated, Floats(parts[r]), destination);
            accumulated = destination;
        }
        TensorPrimitives.Divide(destination, w, destination);
    }

    /// <summary>
    /// The bf16 wire: widens each part to fp32 (exact), takes the same mean as <see cref="Mean"/>,
    /// and rounds it to bf16 (nearest, ties to even).
    /// </summary>
    public static void MeanBf16(ReadOnlySpan<GradientPart> parts, Span<ushort> destination)
    {
        var count = destination.Length;
        var w = parts.Length;
        var scratch = ArrayPool<float>.Shared.Rent(2 * count);
        try
        {
            var accumulated = scratch.AsSpan(0, count);
            var next = scratch.AsSpan(count, count);
            BFloat16Codec.Widen(Halves(parts[0]), accumulated);
            var powerOfTwo = (w & (w - 1)) == 0;
            for (var r = 1; r < w; r++)
            {
                BFloat16Codec.Widen(Halves(parts[r]), next);
                if (r == w - 1 && powerOfTwo)
                {
                    TensorPrimitives.AddMultiply(accumulated, next, 1f / w, accumulated);
                    break;
                }
                TensorPrimitives.Add(accumulated, next, accumulated);
                if (r == w - 1) TensorPrimitives.Divide(accumulated, w, accumulated);
            }
            BFloat16Codec.Narrow(accumulated, destination);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(scratch);
        }
    }

    private static ReadOnlySpan<ushort> Halves(GradientPart part) => MemoryMarshal.Cast<byte, ushort>(part.Data.Span);

    private static ReadOnlySpan<float> Floats(GradientPart part) => MemoryMarshal.Cast<byte, float>(part.Data.Span);
}

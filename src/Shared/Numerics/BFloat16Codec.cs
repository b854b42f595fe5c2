using System.Diagnostics.CodeAnalysis;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Orchestrator.Numerics;

/// <summary>
/// fp32 ⇄ bfloat16 conversion for the bf16 wire format: the upper 16 bits of an IEEE float, so
/// widening is a shift and narrowing rounds to nearest, ties to even. NaN stays NaN (quiet), ±∞
/// stay ±∞, and values past the largest bf16 round to ±∞ as IEEE rounding would.
/// </summary>
public static class BFloat16Codec
{
    /// <summary>Rounds each float to the nearest bf16 (ties to even).</summary>
    public static void Narrow(ReadOnlySpan<float> source, Span<ushort> destination)
    {
        if (destination.Length < source.Length) ThrowTooShort();
        var bits = MemoryMarshal.Cast<float, uint>(source);
        var i = 0;
        if (Vector.IsHardwareAccelerated && bits.Length >= 2 * Vector<uint>.Count)
        {
            var one = Vector<uint>.One;
            var bias = new Vector<uint>(0x7FFF);
            var quiet = new Vector<uint>(0x0040_0000);
            var absMask = new Vector<uint>(0x7FFF_FFFF);
            var infinity = new Vector<uint>(0x7F80_0000);
            var src = MemoryMarshal.Cast<uint, Vector<uint>>(bits);
            var dst = MemoryMarshal.Cast<ushort, Vector<ushort>>(destination);
            for (var v = 0; v + 1 < src.Length && v / 2 < dst.Length; v += 2)
            {
                dst[v / 2] = Vector.Narrow(Round(src[v]), Round(src[v + 1]));
                i += 2 * Vector<uint>.Count;
            }

            Vector<uint> Round(Vector<uint> x)
            {
                var rounded = (x + bias + ((x >> 16) & one)) >> 16;
                // NaN: keep the sign and payload's top bits, force the quiet bit so it cannot round to ∞.
                var isNaN = Vector.GreaterThan(x & absMask, infinity);
                return Vector.ConditionalSelect(isNaN, (x | quiet) >> 16, rounded);
            }
        }
        for (; i < bits.Length; i++) destination[i] = NarrowOne(bits[i]);
    }

    /// <summary>Widens bf16 values to floats (exact).</summary>
    public static void Widen(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        if (destination.Length < source.Length) ThrowTooShort();
        var bits = MemoryMarshal.Cast<float, uint>(destination);
        var i = 0;
        if (Vector.IsHardwareAccelerated && source.Length >= Vector<ushort>.Count)
        {
            var src = MemoryMarshal.Cast<ushort, Vector<ushort>>(source);
            var dst = MemoryMarshal.Cast<uint, Vector<uint>>(bits);
            for (var v = 0; v < src.Length && 2 * v + 1 < dst.Length; v++)
            {
                Vector.Widen(src[v], out var low, out var high);
                dst[2 * v] = low << 16;
                dst[2 * v + 1] = high << 16;
                i += Vector<ushort>.Count;
            }
        }
        for (; i < source.Length; i++) bits[i] = (uint)source[i] << 16;
    }

    /// <summary>Rounds floats to bf16 precision in place (narrow, then widen).</summary>
    public static void RoundInPlace(Span<float> values)
    {
        var bits = MemoryMarshal.Cast<float, uint>(values);
        for (var i = 0; i < bits.Length; i++) bits[i] = (uint)NarrowOne(bits[i]) << 16;
    }

    /// <summary>One float's bits to bf16, round to nearest even.</summary>
    public static ushort NarrowOne(uint bits)
    {
        if ((bits & 0x7FFF_FFFF) > 0x7F80_0000) return (ushort)((bits | 0x0040_0000) >> 16);
        return (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
    }

    [DoesNotReturn, MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowTooShort() =>
        throw new ArgumentException("The destination is shorter than the source.", "destination");
}

using Orchestrator.Numerics;
using Orchestrator.Worker.Distributed;

namespace Orchestrator.Worker.UnitTests.Distributed;

public sealed class BFloat16CodecTests
{
    [Theory]
    [InlineData(0x3F80_0000u, (ushort)0x3F80)] // 1.0 exact
    [InlineData(0x3F80_8000u, (ushort)0x3F80)] // tie, even below: stays
    [InlineData(0x3F81_8000u, (ushort)0x3F82)] // tie, odd below: rounds up to even
    [InlineData(0x3F80_8001u, (ushort)0x3F81)] // just above the tie: up
    [InlineData(0x3F80_7FFFu, (ushort)0x3F80)] // just below the tie: down
    [InlineData(0xBF81_8000u, (ushort)0xBF82)] // negative tie
    [InlineData(0x7F7F_FFFFu, (ushort)0x7F80)] // float.MaxValue overflows to +inf
    [InlineData(0x7F80_0000u, (ushort)0x7F80)] // +inf
    [InlineData(0xFF80_0000u, (ushort)0xFF80)] // -inf
    [InlineData(0x7F80_0001u, (ushort)0x7FC0)] // signalling NaN with a low payload stays NaN (quiet)
    [InlineData(0xFFFF_FFFFu, (ushort)0xFFFF)] // NaN with every bit set does not wrap to zero
    [InlineData(0x0000_8000u, (ushort)0x0000)] // subnormal tie to even
    public void Narrowing_rounds_to_nearest_even_and_keeps_special_values(uint bits, ushort expected)
    {
        Assert.Equal(expected, BFloat16Codec.NarrowOne(bits));
        // The vector path must agree with the scalar one.
        var source = Enumerable.Repeat(BitConverter.UInt32BitsToSingle(bits), 67).ToArray();
        var narrowed = new ushort[67];
        BFloat16Codec.Narrow(source, narrowed);
        Assert.All(narrowed, n => Assert.Equal(expected, n));
    }

    [Fact]
    public void Vector_and_scalar_paths_agree_and_widening_is_exact_at_every_length()
    {
        var random = new Random(1);
        for (var length = 0; length < 200; length++)
        {
            var source = Enumerable.Range(0, length).Select(_ => BitConverter.UInt32BitsToSingle((uint)random.NextInt64(0, 1L << 32))).ToArray();
            var narrowed = new ushort[length];
            BFloat16Codec.Narrow(source, narrowed);
            var widened = new float[length];
            BFloat16Codec.Widen(narrowed, widened);
            for (var i = 0; i < length; i++)
            {
                Assert.Equal(BFloat16Codec.NarrowOne(BitConverter.SingleToUInt32Bits(source[i])), narrowed[i]);
                Assert.Equal((uint)narrowed[i] << 16, BitConverter.SingleToUInt32Bits(widened[i]));
            }
        }
    }
}

namespace Orchestrator.Sweeps;

/// <summary>
/// A small seeded generator (SplitMix64) whose whole state is one <see cref="ulong"/>, so that it
/// is saved with the searcher's state and gives the same numbers on every machine and runtime.
/// </summary>
/// <remarks>
/// <see cref="System.Random"/> is not used: its seeded algorithm is an implementation detail that
/// .NET has changed before, and a sweep must sample the same trials wherever it is restored.
/// </remarks>
public sealed class SplitMix64
{
    /// <summary>Starts from <paramref name="seed"/>.</summary>
    public SplitMix64(ulong seed) => State = seed;

    /// <summary>The state: a generator built from it continues exactly where this one is.</summary>
    public ulong State { get; private set; }

    /// <summary>The next 64 random bits.</summary>
    public ulong NextUInt64()
    {
        var z = State += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>A double in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>An integer in [0, <paramref name="count"/>), without modulo bias.</summary>
    public long NextInt64(long count)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        // Lemire's multiply-shift with rejection: exact uniformity, one draw in the common case.
        var n = (ulong)count;
        var threshold = (0UL - n) % n;
        while (true)
        {
            var high = Math.BigMul(NextUInt64(), n, out var low);
            if (low >= threshold) return (long)high;
        }
    }
}

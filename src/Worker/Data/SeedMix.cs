namespace Orchestrator.Worker.Data;

/// <summary>
/// Derives independent, reproducible seeds from (run seed, epoch, batch, …) with SplitMix64, so
/// every random choice of an epoch can be replayed after a resume without saving RNG state.
/// </summary>
public static class SeedMix
{
    public static ulong Mix(ulong x)
    {
        x += 0x9E3779B97F4A7C15UL;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9UL;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBUL;
        return x ^ (x >> 31);
    }

    public static ulong Of(long seed, long a, long b = 0, long c = 0) =>
        Mix(Mix(Mix(Mix((ulong)seed) ^ (ulong)a) ^ (ulong)b) ^ (ulong)c);

    /// <summary>A System.Random seeded from the mixed value (the seeded Random is stable across .NET versions).</summary>
    public static Random Random(long seed, long a, long b = 0, long c = 0) => new((int)(Of(seed, a, b, c) & 0x7FFFFFFF));
}

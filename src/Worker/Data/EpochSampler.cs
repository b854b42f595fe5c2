namespace Orchestrator.Worker.Data;

/// <summary>
/// Which items one rank sees in one epoch, with PyTorch DistributedSampler semantics: a seeded
/// permutation of the whole data set per epoch (identical on every rank, no communication),
/// padded by wrapping around to a multiple of the world size, then rank r takes items r, r+W, r+2W….
/// Every rank gets the same number of items.
/// </summary>
public sealed class EpochSampler
{
    private readonly int _count;
    private readonly bool _shuffle;
    private readonly long _seed;

    public EpochSampler(int count, bool shuffle, long seed, int rank = 0, int worldSize = 1, bool pad = true)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(worldSize);
        ArgumentOutOfRangeException.ThrowIfNegative(rank);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(rank, worldSize);
        _count = count;
        _shuffle = shuffle;
        _seed = seed;
        Rank = rank;
        WorldSize = worldSize;
        Pad = pad;
    }

    /// <summary>
    /// True (training): shards are padded to equal length by wrapping around. False (evaluation):
    /// every item is seen exactly once, so shards may differ in length by one.
    /// </summary>
    public bool Pad { get; }

    public int Rank { get; }
    public int WorldSize { get; }

    /// <summary>Items per rank per epoch.</summary>
    public int ItemsPerRank => Pad ? (_count + WorldSize - 1) / WorldSize : (_count - Rank + WorldSize - 1) / WorldSize;

    public int[] Indices(int epoch)
    {
        var order = new int[_count];
        for (var i = 0; i < _count; i++) order[i] = i;
        if (_shuffle) SeedMix.Random(_seed, 0x5A3B1E, epoch).Shuffle(order);
        var perRank = ItemsPerRank;
        var mine = new int[perRank];
        for (var k = 0; k < perRank; k++)
            mine[k] = order[(int)((Rank + (long)k * WorldSize) % _count)];
        return mine;
    }
}

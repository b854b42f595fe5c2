namespace Orchestrator.Data;

/// <summary>The train and validation parts of a data set, ready for a trial.</summary>
public sealed record DatasetSplits(IImageDataset Train, IImageDataset Validation, DatasetInfo Info);

/// <summary>Helpers that cut data sets into subsets, deterministically.</summary>
public static class DatasetSlicing
{
    /// <summary>The first <paramref name="limit"/> items, or the data set itself when it is smaller.</summary>
    public static IImageDataset Take(IImageDataset dataset, int? limit)
    {
        if (limit is not { } n || n >= dataset.Count) return dataset;
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(n);
        // A seeded stratum-free shuffle keeps class balance for data sets sorted by label (ImageFolder).
        var order = Permutation(dataset.Count, seed: 12345);
        return SubsetDataset.Of(dataset, order[..n], dataset.Name);
    }

    /// <summary>Splits <paramref name="dataset"/> into (train, hold-out) by a seeded permutation.</summary>
    public static (IImageDataset Train, IImageDataset HoldOut) HoldOut(IImageDataset dataset, double fraction, int seed)
    {
        if (fraction is <= 0 or >= 1)
            throw new ArgumentOutOfRangeException(nameof(fraction), fraction, "hold-out fraction must be in (0, 1)");
        var order = Permutation(dataset.Count, seed);
        var holdCount = Math.Max(1, (int)Math.Round(dataset.Count * fraction));
        var hold = order[..holdCount];
        var train = order[holdCount..];
        Array.Sort(hold);
        Array.Sort(train);
        return (SubsetDataset.Of(dataset, train, dataset.Name + "[train]"),
                SubsetDataset.Of(dataset, hold, dataset.Name + "[holdout]"));
    }

    /// <summary>A seeded Fisher–Yates permutation of 0..n-1 (identical on every platform).</summary>
    public static int[] Permutation(int n, int seed)
    {
        var order = new int[n];
        for (var i = 0; i < n; i++) order[i] = i;
        var rng = new Random(seed);
        rng.Shuffle(order);
        return order;
    }
}

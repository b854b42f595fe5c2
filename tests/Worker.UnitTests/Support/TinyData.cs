using Orchestrator.Data;

namespace Orchestrator.Worker.UnitTests.Support;

/// <summary>Small in-memory data sets a model can learn in a few steps.</summary>
internal static class TinyData
{
    /// <summary>
    /// Class k is a bright square in one of four positions (k = 0..3) on a noisy background:
    /// trivially learnable, so a few epochs must take accuracy far above chance (0.25).
    /// </summary>
    public static InMemoryImageDataset Quadrants(int count, int seed, int channels = 1, int side = 16)
    {
        var shape = new ImageShape(channels, side, side);
        var pixels = new byte[count * shape.Size];
        var labels = new int[count];
        var rng = new Random(seed);
        var half = side / 2;
        for (var i = 0; i < count; i++)
        {
            var label = rng.Next(4);
            labels[i] = label;
            var (oy, ox) = (label / 2 * half, label % 2 * half);
            for (var c = 0; c < channels; c++)
            for (var y = 0; y < side; y++)
            for (var x = 0; x < side; x++)
            {
                var inside = y >= oy && y < oy + half && x >= ox && x < ox + half;
                pixels[i * shape.Size + c * side * side + y * side + x] = (byte)(inside ? 160 + rng.Next(90) : rng.Next(90));
            }
        }
        return new InMemoryImageDataset($"quadrants-{seed}", shape, pixels, labels, ["top-left", "top-right", "bottom-left", "bottom-right"]);
    }

    public static DatasetSplits Splits(int train, int validation, int channels = 1, int side = 16)
    {
        var t = Quadrants(train, 1, channels, side);
        var v = Quadrants(validation, 2, channels, side);
        var mean = Enumerable.Repeat(0.3f, channels).ToArray();
        var std = Enumerable.Repeat(0.3f, channels).ToArray();
        var info = new DatasetInfo("quadrants", t.Shape, t.Classes, mean, std, []);
        return new DatasetSplits(t, v, info);
    }
}

namespace Orchestrator.Data.Readers;

/// <summary>
/// Generated images for benchmarks and smoke runs only: it says nothing about accuracy on real
/// data. Each class has a fixed pattern (an oriented stripe grating with a class-specific colour
/// tint, derived from the class index alone), and each image adds uniform noise; so a model can
/// learn it, and train and validation sets built with different seeds share their classes.
/// Everything is a pure function of (seed, index): no files, no state, safe for concurrent reads.
/// </summary>
public sealed class SyntheticDataset : IImageDataset
{
    private const int NoiseAmplitude = 48;

    private readonly byte[][] _patterns;
    private readonly ulong _seed;

    /// <summary>Creates <paramref name="count"/> images of <paramref name="shape"/> in <paramref name="classCount"/> classes.</summary>
    public SyntheticDataset(int count, ImageShape shape, int classCount, int seed, string name = "synthetic")
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(classCount);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(shape.Channels);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(shape.Height);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(shape.Width);
        Count = count;
        Shape = shape;
        Name = name;
        Classes = Enumerable.Range(0, classCount).Select(i => "class" + i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        _seed = (ulong)(uint)seed * 0x9E3779B97F4A7C15UL;
        _patterns = new byte[classCount][];
        for (var c = 0; c < classCount; c++) _patterns[c] = Pattern(c, classCount, shape);
    }

    public string Name { get; }
    public int Count { get; }
    public ImageShape Shape { get; }
    public IReadOnlyList<string> Classes { get; }

    public int GetLabel(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, Count);
        return (int)(Mix(_seed ^ (ulong)index) % (ulong)Classes.Count);
    }

    public void CopyImage(int index, Span<byte> destination)
    {
        var pattern = _patterns[GetLabel(index)];
        var state = Mix(_seed + 0xD1B54A32D192ED03UL * (ulong)(index + 1));
        var dest = destination[..pattern.Length];
        for (var i = 0; i < dest.Length; i++)
        {
            // Eight noise values per 64-bit draw.
            if ((i & 7) == 0) state = Mix(state);
            var noise = (int)((state >> ((i & 7) * 8)) & 0xFF) * (2 * NoiseAmplitude + 1) / 256 - NoiseAmplitude;
            dest[i] = (byte)Math.Clamp(pattern[i] + noise, 0, 255);
        }
    }

    /// <summary>The noise-free image of class <paramref name="c"/>: a grating whose angle and frequency depend on the class, tinted per channel.</summary>
    private static byte[] Pattern(int c, int classCount, ImageShape shape)
    {
        var pixels = new byte[shape.Size];
        var angle = Math.PI * c / classCount;
        var (cos, sin) = (Math.Cos(angle), Math.Sin(angle));
        var cycles = 2 + c % 3;
        for (var ch = 0; ch < shape.Channels; ch++)
        {
            var tint = ((c + ch) % 3 - 1) * 40;
            for (var y = 0; y < shape.Height; y++)
            {
                for (var x = 0; x < shape.Width; x++)
                {
                    var t = (x * cos / shape.Width + y * sin / shape.Height) * cycles * 2 * Math.PI;
                    pixels[(ch * shape.Height + y) * shape.Width + x] = (byte)Math.Clamp(128 + tint + 70 * Math.Sin(t), 0, 255);
                }
            }
        }
        return pixels;
    }

    /// <summary>SplitMix64's finaliser: a fast, well-mixed hash that is the same on every platform.</summary>
    private static ulong Mix(ulong z)
    {
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}

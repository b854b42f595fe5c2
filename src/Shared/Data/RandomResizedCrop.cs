namespace Orchestrator.Data;

/// <summary>A rectangle of an image, in pixels of that image.</summary>
public readonly record struct CropWindow(int X, int Y, int Width, int Height);

/// <summary>
/// A data set that can cut the tutorial's ImageNet-style random-resized crop from each decoded
/// original (rather than from a pre-resized square): the crop window is chosen on the image as it
/// is stored, then drawn at the output size. Implementations are safe for concurrent calls.
/// </summary>
public interface ICroppingImageDataset : IImageDataset
{
    /// <summary>
    /// Writes a random-resized crop of image <paramref name="index"/>, <paramref name="side"/> ×
    /// <paramref name="side"/> pixels, as CHW uint8 into <paramref name="destination"/>; the window
    /// comes from <see cref="RandomResizedCrop.Sample"/> with <paramref name="rng"/>.
    /// </summary>
    void CopyRandomResizedCrop(int index, Span<byte> destination, int side, Random rng);
}

/// <summary>
/// torchvision's RandomResizedCrop window: an area of 8–100 % of the image and an aspect ratio
/// (width / height) log-uniform in 3/4–4/3, ten tries, then the largest central crop whose ratio is
/// within those bounds. One place for the sampling, whoever crops.
/// </summary>
public static class RandomResizedCrop
{
    public const double MinScale = 0.08;
    public const double MaxScale = 1.0;
    public const double MinRatio = 3.0 / 4.0;
    public const double MaxRatio = 4.0 / 3.0;

    /// <summary>A window of a <paramref name="width"/> × <paramref name="height"/> image.</summary>
    public static CropWindow Sample(int width, int height, Random rng)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(height, 1);
        ArgumentNullException.ThrowIfNull(rng);
        var area = (double)width * height;
        var logMin = Math.Log(MinRatio);
        var logMax = Math.Log(MaxRatio);
        for (var attempt = 0; attempt < 10; attempt++)
        {
            var target = area * (MinScale + rng.NextDouble() * (MaxScale - MinScale));
            var ratio = Math.Exp(logMin + rng.NextDouble() * (logMax - logMin));
            var w = (int)Math.Round(Math.Sqrt(target * ratio));
            var h = (int)Math.Round(Math.Sqrt(target / ratio));
            if (w > 0 && h > 0 && w <= width && h <= height)
                return new CropWindow(rng.Next(width - w + 1), rng.Next(height - h + 1), w, h);
        }
        // Fallback: the whole image, narrowed to the ratio bounds, centred.
        var imageRatio = (double)width / height;
        int cw = width, ch = height;
        if (imageRatio < MinRatio) ch = Math.Max(1, (int)Math.Round(width / MinRatio));
        else if (imageRatio > MaxRatio) cw = Math.Max(1, (int)Math.Round(height * MaxRatio));
        return new CropWindow((width - cw) / 2, (height - ch) / 2, cw, ch);
    }
}

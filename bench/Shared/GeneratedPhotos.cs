using SkiaSharp;

/// <summary>
/// Photos of mixed sizes (300 to 1,600 px a side) and aspect ratios for the decode benchmarks:
/// smooth gradients with shapes and per-pixel noise, so that the JPEGs (quality 90) are about as
/// hard to decode as real ones; in 5 class folders, seeded.
/// </summary>
internal static class GeneratedPhotos
{
    public static string Write(string root, int count)
    {
        var rng = new Random(7);
        for (var i = 0; i < count; i++)
        {
            var width = rng.Next(300, 1601);
            var height = Math.Clamp((int)(width * (0.6 + rng.NextDouble() * 0.9)), 300, 1600);
            using var bitmap = new SKBitmap(width, height);
            using (var canvas = new SKCanvas(bitmap))
            {
                using var shader = SKShader.CreateLinearGradient(new SKPoint(0, 0), new SKPoint(width, height),
                    [new SKColor((byte)rng.Next(256), (byte)rng.Next(256), (byte)rng.Next(256)), new SKColor((byte)rng.Next(256), (byte)rng.Next(256), (byte)rng.Next(256))],
                    SKShaderTileMode.Clamp);
                using var paint = new SKPaint { Shader = shader };
                canvas.DrawRect(0, 0, width, height, paint);
                using var shape = new SKPaint { IsAntialias = true };
                for (var s = 0; s < 40; s++)
                {
                    shape.Color = new SKColor((byte)rng.Next(256), (byte)rng.Next(256), (byte)rng.Next(256), (byte)rng.Next(80, 256));
                    canvas.DrawCircle(rng.Next(width), rng.Next(height), rng.Next(5, Math.Min(width, height) / 4), shape);
                }
            }
            // Sensor-like noise on every pixel.
            var pixels = bitmap.GetPixelSpan();
            var noise = new byte[pixels.Length];
            rng.NextBytes(noise);
            var target = bitmap.GetPixels();
            unsafe
            {
                var p = (byte*)target;
                for (var k = 0; k < pixels.Length; k++) if ((k & 3) != 3) p[k] = (byte)Math.Clamp(p[k] + (noise[k] & 15) - 8, 0, 255);
            }
            var folder = Directory.CreateDirectory(Path.Combine(root, $"class{i % 5}")).FullName;
            using var encoded = bitmap.Encode(SKEncodedImageFormat.Jpeg, 90);
            File.WriteAllBytes(Path.Combine(folder, $"{i:D5}.jpg"), encoded.ToArray());
        }
        return root;
    }
}

using Orchestrator.Data.Readers;
using SkiaSharp;

namespace Orchestrator.Data.Tests;

public sealed class RandomResizedCropTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData(640, 480)]
    [InlineData(100, 1000)]
    [InlineData(3, 2)]
    public void Windows_lie_inside_the_image_with_torchvisions_area_and_ratio_bounds(int width, int height)
    {
        var rng = new Random(4);
        for (var i = 0; i < 2000; i++)
        {
            var w = RandomResizedCrop.Sample(width, height, rng);
            Assert.InRange(w.X, 0, width - w.Width);
            Assert.InRange(w.Y, 0, height - w.Height);
            Assert.True(w.Width >= 1 && w.Height >= 1);
            var ratio = (double)w.Width / w.Height;
            // Sampled windows keep the bounds up to rounding; the fallback narrows to them.
            if (width > 10 && height > 10)
            {
                Assert.InRange((double)w.Width * w.Height / (width * height), RandomResizedCrop.MinScale * 0.9, 1.0);
                Assert.InRange(ratio, RandomResizedCrop.MinRatio * 0.9, RandomResizedCrop.MaxRatio * 1.1);
            }
        }
    }

    [Fact]
    public void An_image_folder_cuts_the_crop_from_the_original_at_the_output_size_seeded_and_in_the_images_colours()
    {
        // Left half red, right half blue, 400 x 300: a crop is red, blue or both, never anything else.
        var path = _dir.Combine("c", "photo.jpg");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using (var bitmap = new SKBitmap(400, 300))
        {
            using (var canvas = new SKCanvas(bitmap))
            {
                canvas.Clear(SKColors.Red);
                using var blue = new SKPaint { Color = SKColors.Blue };
                canvas.DrawRect(200, 0, 200, 300, blue);
            }
            using var encoded = bitmap.Encode(SKEncodedImageFormat.Jpeg, 95);
            File.WriteAllBytes(path, encoded.ToArray());
        }
        ICroppingImageDataset data = new ImageFolderDataset(_dir.Path, 64);
        var a = new byte[3 * 48 * 48];
        var b = new byte[3 * 48 * 48];
        data.CopyRandomResizedCrop(0, a, 48, new Random(1));
        data.CopyRandomResizedCrop(0, b, 48, new Random(1));
        Assert.Equal(a, b);
        var seen = new HashSet<string>();
        for (var seed = 0; seed < 20; seed++)
        {
            data.CopyRandomResizedCrop(0, a, 48, new Random(seed));
            for (var i = 0; i < 48 * 48; i++)
            {
                var (r, g, bl) = (a[i], a[48 * 48 + i], a[2 * 48 * 48 + i]);
                Assert.True(g < 60, $"green {g} in a red and blue image");
                if (r > 200 && bl < 60) seen.Add("red");
                if (bl > 200 && r < 60) seen.Add("blue");
            }
        }
        // Different windows: some crops fall on either half.
        Assert.Equal(["blue", "red"], seen.Order());
    }

    [Fact]
    public void A_held_out_split_of_an_image_folder_still_crops_from_its_originals()
    {
        for (var i = 0; i < 10; i++) TestFiles.Image(_dir.Combine(i % 2 == 0 ? "a" : "b", $"{i}.png"), 40, 30, SKColors.Green);
        var data = new ImageFolderDataset(_dir.Path, 16);
        var (train, holdOut) = DatasetSlicing.HoldOut(data, 0.2, 1);
        Assert.IsAssignableFrom<ICroppingImageDataset>(train);
        Assert.IsAssignableFrom<ICroppingImageDataset>(holdOut);
        var crop = new byte[3 * 12 * 12];
        ((ICroppingImageDataset)train).CopyRandomResizedCrop(0, crop, 12, new Random(3));
        Assert.All(crop.Skip(12 * 12).Take(12 * 12), g => Assert.True(g > 100, $"green {g}"));
    }
}

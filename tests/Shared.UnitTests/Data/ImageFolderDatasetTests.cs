using Orchestrator.Data.Readers;
using SkiaSharp;

namespace Orchestrator.Data.Tests;

public sealed class ImageFolderDatasetTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private static byte[] Copy(IImageDataset data, int index)
    {
        var image = new byte[data.Shape.Size];
        data.CopyImage(index, image);
        return image;
    }

    [Fact]
    public void Classes_are_the_subfolders_sorted_ordinally_and_images_match_any_case_of_extension()
    {
        TestFiles.Image(_dir.Combine("b", "1.PNG"), 8, 8, SKColors.Red);
        TestFiles.Image(_dir.Combine("b", "nested", "2.jpeg"), 8, 8, SKColors.Red, SKEncodedImageFormat.Jpeg);
        TestFiles.Image(_dir.Combine("B", "3.Jpg"), 8, 8, SKColors.Red, SKEncodedImageFormat.Jpeg);
        TestFiles.Image(_dir.Combine("a", "4.png"), 8, 8, SKColors.Red);
        File.WriteAllText(_dir.Combine("a", "notes.txt"), "not an image");

        var data = new ImageFolderDataset(_dir.Path, 4);

        Assert.Equal(["B", "a", "b"], data.Classes);
        Assert.Equal(4, data.Count);
        Assert.Equal([0, 1, 2, 2], Enumerable.Range(0, 4).Select(data.GetLabel));
        Assert.Equal(new ImageShape(3, 4, 4), data.Shape);
    }

    [Fact]
    public void An_image_is_decoded_to_rgb_planes_of_the_requested_size()
    {
        TestFiles.Image(_dir.Combine("only", "x.png"), 10, 10, new SKColor(200, 100, 50));

        var image = Copy(new ImageFolderDataset(_dir.Path, 6), 0);

        Assert.Equal(3 * 36, image.Length);
        Assert.All(image[..36], v => Assert.Equal(200, v));
        Assert.All(image[36..72], v => Assert.Equal(100, v));
        Assert.All(image[72..], v => Assert.Equal(50, v));
    }

    [Fact]
    public void The_shorter_side_is_resized_and_the_center_cropped()
    {
        // 40×20: left quarter blue, middle half green, right quarter red. The shorter side to 16
        // gives 32×16, whose center 16×16 crop is exactly the green middle half.
        var path = _dir.Combine("c", "wide.png");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using (var bitmap = new SKBitmap(40, 20, SKColorType.Rgba8888, SKAlphaType.Unpremul))
        {
            for (var y = 0; y < 20; y++)
                for (var x = 0; x < 40; x++)
                    bitmap.SetPixel(x, y, x < 10 ? SKColors.Blue : x >= 30 ? SKColors.Red : SKColors.Lime);
            using var file = File.Create(path);
            bitmap.Encode(file, SKEncodedImageFormat.Png, 100);
        }

        var image = Copy(new ImageFolderDataset(_dir.Path, 16), 0);

        var plane = 16 * 16;
        // Pixels off the crop's edges (where filtering may blend in a neighbour) are pure green; a
        // squashed or uncropped image would show blue or red there.
        for (var y = 0; y < 16; y++)
        {
            foreach (var x in new[] { 3, 8, 12 })
            {
                Assert.InRange(image[y * 16 + x], 0, 40);             // R
                Assert.InRange(image[plane + y * 16 + x], 215, 255);  // G
                Assert.InRange(image[2 * plane + y * 16 + x], 0, 40); // B
            }
        }
    }

    [Fact]
    public void Many_threads_decode_the_same_images_to_the_same_bytes()
    {
        var colors = new[] { SKColors.Red, SKColors.Blue, SKColors.Yellow, SKColors.Cyan };
        for (var i = 0; i < colors.Length; i++) TestFiles.Image(_dir.Combine("k" + i, "img.png"), 30 + i, 20, colors[i]);
        var data = new ImageFolderDataset(_dir.Path, 12);
        var expected = Enumerable.Range(0, data.Count).Select(i => Copy(data, i)).ToArray();

        var mismatches = 0;
        Parallel.For(0, 400, new ParallelOptions { MaxDegreeOfParallelism = 8 }, n =>
        {
            var image = new byte[data.Shape.Size];
            data.CopyImage(n % data.Count, image);
            if (!image.AsSpan().SequenceEqual(expected[n % data.Count])) Interlocked.Increment(ref mismatches);
        });

        Assert.Equal(0, mismatches);
    }

    [Fact]
    public void A_corrupt_image_raises_a_data_format_error_naming_the_file()
    {
        TestFiles.Image(_dir.Combine("good", "ok.png"), 8, 8, SKColors.Red);
        var bad = _dir.Combine("bad", "broken.jpg");
        Directory.CreateDirectory(Path.GetDirectoryName(bad)!);
        File.WriteAllBytes(bad, "definitely not a JPEG"u8.ToArray());
        var data = new ImageFolderDataset(_dir.Path, 8);
        var index = Enumerable.Range(0, data.Count).Single(i => data.GetPath(i) == bad);

        var ex = Assert.Throws<DataFormatException>(() => Copy(data, index));

        Assert.Equal(bad, ex.File);
        Assert.Contains("not a readable JPEG or PNG image", ex.Message);
    }

    [Fact]
    public void A_truncated_png_raises_a_data_format_error_naming_the_file()
    {
        var path = _dir.Combine("c", "cut.png");
        TestFiles.Image(path, 64, 64, SKColors.Green);
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
        var data = new ImageFolderDataset(_dir.Path, 8);

        var ex = Assert.Throws<DataFormatException>(() => Copy(data, 0));

        Assert.Equal(path, ex.File);
        Assert.Contains("corrupt or incomplete", ex.Message);
    }

    [Theory]
    [InlineData(SKEncodedImageFormat.Png, 100_000, 100_000)]
    [InlineData(SKEncodedImageFormat.Jpeg, 65_000, 65_000)]
    public void A_decompression_bomb_is_refused_from_its_header_naming_the_file_and_its_size(SKEncodedImageFormat format, int width, int height)
    {
        var path = _dir.Combine("c", format == SKEncodedImageFormat.Png ? "bomb.png" : "bomb.jpg");
        TestFiles.Bomb(path, width, height, format);
        Assert.True(new FileInfo(path).Length < 4096);
        var data = new ImageFolderDataset(_dir.Path, 8);

        var ex = Assert.Throws<DataFormatException>(() => Copy(data, 0));

        Assert.Equal(path, ex.File);
        Assert.Contains($"declares {width}x{height} pixels", ex.Message);
        Assert.Contains("decompression bomb", ex.Message);
    }

    [Fact]
    public void A_symbolic_link_loop_is_an_error_naming_the_link()
    {
        TestFiles.Image(_dir.Combine("a", "1.png"), 8, 8, SKColors.Red);
        TestFiles.Image(_dir.Combine("b", "2.png"), 8, 8, SKColors.Red);
        var loop = _dir.Combine("a", "again");
        File.CreateSymbolicLink(loop, ".");

        var ex = Assert.Throws<DataFormatException>(() => new ImageFolderDataset(_dir.Path, 8));

        Assert.Equal(loop, ex.File);
        Assert.Contains("symbolic link loop", ex.Message);
    }

    [Theory]
    [InlineData("..")]      // the image folder's root
    [InlineData("../..")]   // a folder above it
    [InlineData("/")]
    public void A_symbolic_link_to_a_folder_above_is_a_loop(string target)
    {
        TestFiles.Image(_dir.Combine("a", "nested", "1.png"), 8, 8, SKColors.Red);
        var link = _dir.Combine("a", "nested", "up");
        File.CreateSymbolicLink(link, target == "/" ? "/" : "../" + target);

        var ex = Assert.Throws<DataFormatException>(() => new ImageFolderDataset(_dir.Path, 8));

        Assert.Equal(link, ex.File);
        Assert.Contains("symbolic link loop", ex.Message);
    }

    [Fact]
    public void A_symbolic_link_into_another_class_is_an_error_not_a_mislabelled_copy()
    {
        TestFiles.Image(_dir.Combine("cat", "1.png"), 8, 8, SKColors.Red);
        TestFiles.Image(_dir.Combine("dog", "2.png"), 8, 8, SKColors.Red);
        var link = _dir.Combine("cat", "dogs");
        File.CreateSymbolicLink(link, "../dog");

        var ex = Assert.Throws<DataFormatException>(() => new ImageFolderDataset(_dir.Path, 8));

        Assert.Equal(link, ex.File);
        Assert.Contains("symbolic link into the image folder itself", ex.Message);
    }

    [Fact]
    public void Symbolic_links_to_folders_elsewhere_are_followed_once()
    {
        using var elsewhere = new TempDir();
        TestFiles.Image(elsewhere.Combine("cats", "1.png"), 8, 8, SKColors.Red);
        TestFiles.Image(elsewhere.Combine("cats", "2.png"), 8, 8, SKColors.Red);
        TestFiles.Image(_dir.Combine("dog", "3.png"), 8, 8, SKColors.Red);
        Directory.CreateSymbolicLink(_dir.Combine("cat"), elsewhere.Combine("cats"));

        var data = new ImageFolderDataset(_dir.Path, 8);

        Assert.Equal(["cat", "dog"], data.Classes);
        Assert.Equal([0, 0, 1], Enumerable.Range(0, data.Count).Select(data.GetLabel));

        // A second way to the same folder would list its images twice.
        var twice = _dir.Combine("dog", "more");
        Directory.CreateSymbolicLink(twice, elsewhere.Combine("cats"));
        var ex = Assert.Throws<DataFormatException>(() => new ImageFolderDataset(_dir.Path, 8));
        Assert.Equal(twice, ex.File);
        Assert.Contains("is the same folder as", ex.Message);
    }

    [Fact]
    public void An_empty_root_is_a_clear_error()
    {
        var ex = Assert.Throws<DataFormatException>(() => new ImageFolderDataset(_dir.Path, 8));

        Assert.Equal(_dir.Path, ex.File);
        Assert.Contains("no class subfolders", ex.Message);
    }

    [Fact]
    public void A_class_folder_without_images_is_a_clear_error_naming_the_folder()
    {
        TestFiles.Image(_dir.Combine("cat", "1.png"), 8, 8, SKColors.Red);
        _dir.Dir("dog");
        File.WriteAllText(_dir.Combine("dog", "readme.txt"), "no images here");

        var ex = Assert.Throws<DataFormatException>(() => new ImageFolderDataset(_dir.Path, 8));

        Assert.Equal(_dir.Combine("dog"), ex.File);
        Assert.Contains("class folder 'dog' holds no images", ex.Message);
    }

    [Fact]
    public void Train_and_val_subfolders_are_the_splits_and_val_uses_the_training_classes()
    {
        TestFiles.Image(_dir.Combine("train", "cat", "1.png"), 8, 8, SKColors.Red);
        TestFiles.Image(_dir.Combine("train", "dog", "1.png"), 8, 8, SKColors.Red);
        TestFiles.Image(_dir.Combine("train", "dog", "2.png"), 8, 8, SKColors.Red);
        TestFiles.Image(_dir.Combine("val", "dog", "3.png"), 8, 8, SKColors.Red);

        var (train, validation) = ImageFolderDataset.OpenSplits(_dir.Path, 8);

        Assert.Equal(3, train.Count);
        Assert.NotNull(validation);
        Assert.Equal(1, validation.Count);
        Assert.Equal(["cat", "dog"], validation.Classes);
        Assert.Equal(1, validation.GetLabel(0));
    }

    [Fact]
    public void A_folder_without_train_and_val_is_one_training_set()
    {
        TestFiles.Image(_dir.Combine("train", "1.png"), 8, 8, SKColors.Red);
        TestFiles.Image(_dir.Combine("other", "1.png"), 8, 8, SKColors.Red);

        var (train, validation) = ImageFolderDataset.OpenSplits(_dir.Path, 8);

        Assert.Null(validation);
        Assert.Equal(["other", "train"], train.Classes);
    }

    [Fact]
    public void A_validation_class_unknown_to_train_is_rejected()
    {
        TestFiles.Image(_dir.Combine("train", "cat", "1.png"), 8, 8, SKColors.Red);
        TestFiles.Image(_dir.Combine("test", "cow", "1.png"), 8, 8, SKColors.Red);

        var ex = Assert.Throws<DataFormatException>(() => ImageFolderDataset.OpenSplits(_dir.Path, 8));

        Assert.Contains("cow", ex.Message);
        Assert.Contains("not among the training classes", ex.Message);
    }
}

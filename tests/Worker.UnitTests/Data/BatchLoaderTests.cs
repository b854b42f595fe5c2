using Orchestrator.Data;
using Orchestrator.Worker.Data;
using Orchestrator.Worker.UnitTests.Support;

namespace Orchestrator.Worker.UnitTests.Data;

public class BatchLoaderTests
{
    private static readonly ImageShape Three = new(1, 3, 3);

    [Fact]
    public void Crop_with_padding_shifts_the_image_and_fills_zeros()
    {
        byte[] src = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        var dst = new byte[9];
        BatchLoader.CropFlip(src, Three, dst, Three, oy: -1, ox: 1, flip: false);
        Assert.Equal(new byte[] { 0, 0, 0, 2, 3, 0, 5, 6, 0 }, dst);
    }

    [Fact]
    public void Flip_mirrors_each_row()
    {
        byte[] src = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        var dst = new byte[9];
        BatchLoader.CropFlip(src, Three, dst, Three, 0, 0, flip: true);
        Assert.Equal(new byte[] { 3, 2, 1, 6, 5, 4, 9, 8, 7 }, dst);
    }

    [Fact]
    public void An_epoch_yields_every_item_once_with_its_label()
    {
        var data = TinyData.Quadrants(50, 3);
        using var loader = new BatchLoader(data, new BatchPlan(16, Shuffle: true, DropLast: false, Seed: 1));
        var seen = new List<(long Label, byte First)>();
        foreach (var b in loader.Epoch(1, CancellationToken.None))
        {
            for (var i = 0; i < b.Count; i++) seen.Add((b.Labels[i], b.Images[i * data.Shape.Size]));
            loader.Return(b);
        }
        Assert.Equal(4, loader.BatchesPerEpoch);
        Assert.Equal(50, seen.Count);
        var expected = Enumerable.Range(0, 50).Select(i => ((long)data.GetLabel(i), data.Pixels[i * data.Shape.Size])).Order();
        Assert.Equal(expected, seen.Order());
    }

    [Fact]
    public void Augmented_batches_are_reproducible_for_a_seed_and_epoch()
    {
        var data = TinyData.Quadrants(40, 3);
        var plan = new BatchPlan(8, true, true, Seed: 5, CropPadding: 2, Flip: true);
        byte[] Run(int epoch)
        {
            using var loader = new BatchLoader(data, plan);
            return loader.Epoch(epoch, CancellationToken.None).SelectMany(b => b.Images.Take(b.Count * data.Shape.Size).ToArray()).ToArray();
        }
        Assert.Equal(Run(2), Run(2));
        Assert.NotEqual(Run(2), Run(3));
    }

    [Fact]
    public void A_failing_data_set_surfaces_its_error_to_the_consumer()
    {
        using var loader = new BatchLoader(new BrokenDataset(), new BatchPlan(4, false, false, 0));
        var e = Assert.Throws<InvalidDataException>(() => loader.Epoch(1, CancellationToken.None).ToList());
        Assert.Contains("broken.bin", e.Message);
    }

    [Fact]
    public void Several_loader_threads_yield_the_same_batches_in_the_same_order_as_one()
    {
        var data = TinyData.Quadrants(203, 5);
        List<(long[] Labels, byte[] Images)> Batches(int threads, int epoch)
        {
            using var loader = new BatchLoader(data, new BatchPlan(16, Shuffle: true, DropLast: false, Seed: 9, CropPadding: 2, Flip: true, LoaderThreads: threads));
            var batches = new List<(long[], byte[])>();
            foreach (var b in loader.Epoch(epoch, CancellationToken.None))
            {
                batches.Add((b.Labels.AsSpan(0, b.Count).ToArray(), b.Images.AsSpan(0, b.Count * data.Shape.Size).ToArray()));
                loader.Return(b);
            }
            return batches;
        }
        foreach (var epoch in new[] { 1, 2 })
        {
            var one = Batches(1, epoch);
            var four = Batches(4, epoch);
            Assert.Equal(13, one.Count);
            Assert.Equal(one.Count, four.Count);
            for (var i = 0; i < one.Count; i++)
            {
                Assert.Equal(one[i].Labels, four[i].Labels);
                Assert.Equal(one[i].Images, four[i].Images);
            }
        }
    }

    [Fact]
    public void A_data_error_on_any_loader_thread_ends_the_epoch_with_that_error()
    {
        using var loader = new BatchLoader(new BrokenDataset(), new BatchPlan(2, false, false, 0, LoaderThreads: 3));
        var e = Assert.Throws<InvalidDataException>(() => loader.Epoch(1, CancellationToken.None).ToList());
        Assert.Contains("image 3 is truncated", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_data_set_that_crops_from_its_originals_gets_the_random_resized_crop_on_the_host_the_same_on_any_number_of_threads()
    {
        var data = new CroppingDataset();
        List<byte[]> Epoch(int threads)
        {
            using var loader = new BatchLoader(data, new BatchPlan(4, Shuffle: true, DropLast: false, Seed: 2, Flip: true, LoaderThreads: threads, RandomResizedCropSide: 5));
            Assert.Equal(new ImageShape(3, 5, 5), loader.OutputShape);
            var images = new List<byte[]>();
            foreach (var b in loader.Epoch(1, CancellationToken.None))
            {
                for (var i = 0; i < b.Count; i++) images.Add(b.Images.AsSpan(i * 75, 75).ToArray());
                loader.Return(b);
            }
            return images;
        }
        var one = Epoch(1);
        Assert.Equal(12, one.Count);
        Assert.Equal(one, Epoch(3));
        // Each crop starts with its item's index: every item came through the cropping path once.
        Assert.Equal(Enumerable.Range(0, 12).Select(i => (byte)i), one.Select(image => image[0] == 255 ? image[4] : image[0]).Order());
    }

    /// <summary>Crops that are the item index in the first pixel, then bytes drawn from the generator; flips mirror rows.</summary>
    private sealed class CroppingDataset : ICroppingImageDataset
    {
        public string Name => "cropping";
        public int Count => 12;
        public ImageShape Shape => new(3, 40, 40);
        public IReadOnlyList<string> Classes => ["a"];
        public int GetLabel(int index) => 0;
        public void CopyImage(int index, Span<byte> destination) => throw new InvalidOperationException("the loader must crop from the original");

        public void CopyRandomResizedCrop(int index, Span<byte> destination, int side, Random rng)
        {
            Assert.Equal(5, side);
            for (var i = 0; i < 3 * side * side; i++) destination[i] = (byte)rng.Next(16, 255);
            destination[0] = (byte)index;
            // A mirrored row puts the index at the row's end; mark the start so it can be found.
            destination[side - 1] = 255;
        }
    }

    private sealed class BrokenDataset : IImageDataset
    {
        public string Name => "broken";
        public int Count => 10;
        public ImageShape Shape => Three;
        public IReadOnlyList<string> Classes => ["a"];
        public int GetLabel(int index) => 0;
        public void CopyImage(int index, Span<byte> destination) =>
            throw new DataFormatException("broken.bin", "image 3 is truncated", 27);
    }
}

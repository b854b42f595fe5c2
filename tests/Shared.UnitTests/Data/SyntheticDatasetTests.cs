using Orchestrator.Data.Readers;

namespace Orchestrator.Data.Tests;

public sealed class SyntheticDatasetTests
{
    private static readonly ImageShape Shape = new(3, 16, 16);

    private static byte[] Copy(IImageDataset data, int index)
    {
        var image = new byte[data.Shape.Size];
        data.CopyImage(index, image);
        return image;
    }

    [Fact]
    public void The_same_seed_gives_the_same_images_and_labels()
    {
        var a = new SyntheticDataset(50, Shape, 10, seed: 7);
        var b = new SyntheticDataset(50, Shape, 10, seed: 7);

        for (var i = 0; i < 50; i++)
        {
            Assert.Equal(a.GetLabel(i), b.GetLabel(i));
            Assert.Equal(Copy(a, i), Copy(b, i));
        }
    }

    [Fact]
    public void Another_seed_gives_other_images()
    {
        var a = new SyntheticDataset(20, Shape, 10, seed: 1);
        var b = new SyntheticDataset(20, Shape, 10, seed: 2);

        Assert.Contains(Enumerable.Range(0, 20), i => !Copy(a, i).AsSpan().SequenceEqual(Copy(b, i)));
    }

    [Fact]
    public void Every_class_occurs_and_shape_and_count_are_as_configured()
    {
        var data = new SyntheticDataset(500, new ImageShape(1, 8, 12), 5, seed: 3);

        Assert.Equal(500, data.Count);
        Assert.Equal(new ImageShape(1, 8, 12), data.Shape);
        Assert.Equal(5, data.Classes.Count);
        Assert.Equal([0, 1, 2, 3, 4], Enumerable.Range(0, 500).Select(data.GetLabel).Distinct().Order());
    }

    [Fact]
    public void A_nearest_class_mean_classifier_separates_the_classes_across_seeds()
    {
        // Learnable: class means estimated on one seed classify another seed's images far above chance (10 %).
        var train = new SyntheticDataset(1000, Shape, 10, seed: 1);
        var test = new SyntheticDataset(300, Shape, 10, seed: 2);
        var means = new double[10, Shape.Size];
        var counts = new int[10];
        for (var i = 0; i < train.Count; i++)
        {
            var image = Copy(train, i);
            var label = train.GetLabel(i);
            counts[label]++;
            for (var p = 0; p < image.Length; p++) means[label, p] += image[p];
        }

        var correct = 0;
        for (var i = 0; i < test.Count; i++)
        {
            var image = Copy(test, i);
            var best = Enumerable.Range(0, 10).MinBy(c =>
            {
                double d = 0;
                for (var p = 0; p < image.Length; p++)
                {
                    var diff = image[p] - means[c, p] / counts[c];
                    d += diff * diff;
                }
                return d;
            });
            if (best == test.GetLabel(i)) correct++;
        }

        Assert.True(correct > test.Count * 0.9, $"nearest-mean accuracy {correct}/{test.Count}");
    }
}

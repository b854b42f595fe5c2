using Orchestrator.Data.Readers;
using Orchestrator.Trials;
using SkiaSharp;

namespace Orchestrator.Data.Tests;

public sealed class DatasetLoaderTests : IDisposable
{
    private const string FashionMnistDir = "/usr/share/datasets/fashion-mnist";
    private readonly TempDir _dir = new();
    private readonly CancellationTokenSource _cts = new(TimeSpan.FromSeconds(60));

    public void Dispose()
    {
        _cts.Dispose();
        _dir.Dispose();
    }

    /// <summary>A resolver with an empty cache of its own, so the tests never see the user's cache.</summary>
    private DatasetResolver Resolver(string? systemRoot = DatasetResolver.DefaultSystemRoot) =>
        new(cacheRoot: _dir.Combine("cache"), systemRoot: systemRoot);

    [Fact]
    public async Task The_installed_Fashion_MNIST_loads_as_60000_train_and_10000_test_images()
    {
        // dataset-fashion-mnist is installed on development machines and in CI (see docs/data.md).
        var splits = await DatasetLoader.LoadAsync(new DataSpec { Name = "fashion-mnist", Download = false }, 0, Resolver(), null, _cts.Token);

        Assert.Equal(60_000, splits.Train.Count);
        Assert.Equal(10_000, splits.Validation.Count);
        Assert.Equal(new ImageShape(1, 28, 28), splits.Train.Shape);
        Assert.Equal(new ImageShape(1, 28, 28), splits.Validation.Shape);
        // The catalog's description, as the provider reports it (the same path a plug-in's data set takes).
        var info = DatasetCatalog.FashionMnist;
        Assert.Equal((info.Name, info.Shape), (splits.Info.Name, splits.Info.Shape));
        Assert.Equal(info.Classes, splits.Info.Classes);
        Assert.Equal(info.Mean, splits.Info.Mean);
        Assert.Equal(info.Std, splits.Info.Std);
        Assert.Equal(Enumerable.Range(0, 10), Enumerable.Range(0, splits.Train.Count).Select(splits.Train.GetLabel).Distinct().Order());
        Assert.Equal(Enumerable.Range(0, 10), Enumerable.Range(0, splits.Validation.Count).Select(splits.Validation.GetLabel).Distinct().Order());

        // The published mean (0.2860) says the pixels were read as images, not as header bytes or zeros.
        var train = Assert.IsType<InMemoryImageDataset>(splits.Train);
        double sum = 0;
        foreach (var b in train.Pixels) sum += b;
        Assert.InRange(sum / train.Pixels.Length / 255, 0.28, 0.29);
    }

    [Fact]
    public void Load_with_a_hold_out_and_limits_cuts_the_training_set_not_the_test_split()
    {
        var spec = new DataSpec { Name = "fashion-mnist", Dir = FashionMnistDir, Holdout = 0.2, LimitTrain = 1000, LimitTest = 300, Download = false };

        var splits = DatasetLoader.Load(spec, seed: 3, progress: null, _cts.Token);

        Assert.Equal(1000, splits.Train.Count);
        Assert.Equal(300, splits.Validation.Count);
        var validation = Assert.IsType<SubsetDataset>(splits.Validation);
        var holdOut = Assert.IsType<SubsetDataset>(validation.Source);
        Assert.Equal(12_000, holdOut.Count);
        Assert.Equal("fashion-mnist/train[holdout]", holdOut.Name);
    }

    [Fact]
    public async Task The_same_seed_holds_out_the_same_images()
    {
        var spec = new DataSpec { Name = "synthetic", Holdout = 0.1 };

        var a = await DatasetLoader.LoadAsync(spec, 11, Resolver(), null, _cts.Token);
        var b = await DatasetLoader.LoadAsync(spec, 11, Resolver(), null, _cts.Token);
        var c = await DatasetLoader.LoadAsync(spec, 12, Resolver(), null, _cts.Token);

        Assert.Equal(1000, a.Validation.Count);
        Assert.Equal(9000, a.Train.Count);
        Assert.Equal(Enumerable.Range(0, 50).Select(a.Validation.GetLabel), Enumerable.Range(0, 50).Select(b.Validation.GetLabel));
        Assert.NotEqual(Enumerable.Range(0, 50).Select(a.Validation.GetLabel), Enumerable.Range(0, 50).Select(c.Validation.GetLabel));
    }

    [Fact]
    public async Task Synthetic_data_has_ten_classes_the_configured_size_and_the_standard_counts()
    {
        var full = await DatasetLoader.LoadAsync(new DataSpec { Name = "synthetic" }, 0, Resolver(), null, _cts.Token);
        var small = await DatasetLoader.LoadAsync(new DataSpec { Name = "synthetic", ImageSize = 16, LimitTrain = 64, LimitTest = 32 }, 0, Resolver(), null, _cts.Token);

        Assert.Equal(10_000, full.Train.Count);
        Assert.Equal(2_000, full.Validation.Count);
        Assert.Equal(new ImageShape(3, 32, 32), full.Info.Shape);
        Assert.Equal(10, full.Info.NumClasses);
        Assert.Equal([0.5f, 0.5f, 0.5f], full.Info.Mean);
        Assert.Equal(new ImageShape(3, 16, 16), small.Train.Shape);
        Assert.Equal(64, small.Train.Count);
        Assert.Equal(32, small.Validation.Count);
    }

    [Fact]
    public async Task An_image_folder_without_a_val_folder_holds_out_a_tenth_and_uses_ImageNet_statistics()
    {
        for (var i = 0; i < 10; i++)
        {
            TestFiles.Image(_dir.Combine("photos", "cat", $"{i}.png"), 12, 10, SKColors.Orange);
            TestFiles.Image(_dir.Combine("photos", "dog", $"{i}.jpg"), 10, 12, SKColors.Brown, SKEncodedImageFormat.Jpeg);
        }

        var splits = await DatasetLoader.LoadAsync(new DataSpec { Name = "imagefolder", Dir = _dir.Combine("photos"), ImageSize = 8 }, 0, Resolver(), null, _cts.Token);

        Assert.Equal(18, splits.Train.Count);
        Assert.Equal(2, splits.Validation.Count);
        Assert.Equal(["cat", "dog"], splits.Info.Classes);
        Assert.Equal(new ImageShape(3, 8, 8), splits.Info.Shape);
        Assert.Equal(DatasetCatalog.ImageNetMean, splits.Info.Mean);
        Assert.Equal(DatasetCatalog.ImageNetStd, splits.Info.Std);
    }

    [Fact]
    public async Task An_image_folder_defaults_to_224_pixel_images_and_its_val_folder()
    {
        TestFiles.Image(_dir.Combine("photos", "train", "cat", "1.png"), 300, 250, SKColors.Orange);
        TestFiles.Image(_dir.Combine("photos", "val", "cat", "2.png"), 300, 250, SKColors.Orange);

        var splits = await DatasetLoader.LoadAsync(new DataSpec { Name = "imagefolder", Dir = _dir.Combine("photos") }, 0, Resolver(), null, _cts.Token);

        Assert.Equal(1, splits.Train.Count);
        Assert.Equal(1, splits.Validation.Count);
        Assert.Equal(new ImageShape(3, 224, 224), splits.Validation.Shape);
    }

    [Fact]
    public async Task Cifar10_loads_from_a_data_dir_with_its_class_names()
    {
        var batches = _dir.Dir("c10", CifarReader.Cifar10Folder);
        for (var b = 1; b <= 5; b++)
            await File.WriteAllBytesAsync(Path.Combine(batches, $"data_batch_{b}.bin"), TestFiles.CifarRecords([[(byte)b]], (r, p) => 0), _cts.Token);
        await File.WriteAllBytesAsync(Path.Combine(batches, "test_batch.bin"), TestFiles.CifarRecords([[9], [0]], (r, p) => 0), _cts.Token);

        var splits = await DatasetLoader.LoadAsync(new DataSpec { Name = "cifar10", Dir = _dir.Combine("c10"), Download = false }, 0, Resolver(), null, _cts.Token);

        Assert.Equal([1, 2, 3, 4, 5], Enumerable.Range(0, 5).Select(splits.Train.GetLabel));
        Assert.Equal(2, splits.Validation.Count);
        Assert.Equal("airplane", splits.Info.Classes[0]);
        Assert.Equal(new ImageShape(3, 32, 32), splits.Info.Shape);
    }

    [Fact]
    public async Task An_unknown_data_set_name_is_rejected_naming_the_known_ones()
    {
        var ex = await Assert.ThrowsAsync<DatasetNotFoundException>(() =>
            DatasetLoader.LoadAsync(new DataSpec { Name = "imagenet-22k" }, 0, Resolver(), null, _cts.Token));

        Assert.Contains("'imagenet-22k'", ex.Message);
        Assert.Contains("fashion-mnist, mnist, cifar10, cifar100, imagefolder, synthetic", ex.Message);
    }

    [Fact]
    public async Task An_image_folder_without_a_dir_is_rejected()
    {
        var ex = await Assert.ThrowsAsync<DatasetNotFoundException>(() =>
            DatasetLoader.LoadAsync(new DataSpec { Name = "imagefolder" }, 0, Resolver(), null, _cts.Token));

        Assert.Contains("data.dir", ex.Message);
    }

    [Fact]
    public async Task A_missing_catalog_data_set_raises_the_resolver_message()
    {
        var ex = await Assert.ThrowsAsync<DatasetNotFoundException>(() =>
            DatasetLoader.LoadAsync(new DataSpec { Name = "mnist", Download = false }, 0, Resolver(systemRoot: _dir.Dir("no-system")), null, _cts.Token));

        Assert.Contains("Data set 'mnist' was not found", ex.Message);
        Assert.Contains("--data-dir DIR", ex.Message);
    }
}

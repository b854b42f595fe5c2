using Orchestrator.Data.Readers;
using Orchestrator.Sdk;
using Orchestrator.Trials;

namespace Orchestrator.Data;

/// <summary>
/// Turns a <see cref="DataSpec"/> into train and validation data sets: finds (or downloads) the
/// files, reads them, splits off a hold-out when asked, and applies the size limits.
/// </summary>
public static class DatasetLoader
{
    /// <summary>Image side of imagefolder data when <see cref="DataSpec.ImageSize"/> is not set.</summary>
    public const int DefaultImageFolderSize = 224;

    /// <summary>Hold-out fraction of imagefolder data that has no val/ or test/ folder.</summary>
    public const double DefaultImageFolderHoldout = 0.1;

    /// <summary>Image side of synthetic data when <see cref="DataSpec.ImageSize"/> is not set.</summary>
    public const int DefaultSyntheticSize = 32;

    /// <summary>Sizes of the synthetic splits (before the limits).</summary>
    public const int SyntheticTrainCount = 10_000, SyntheticValidationCount = 2_000;

    // Fixed, so that every trial of a sweep sees the same synthetic images.
    private const int SyntheticTrainSeed = 1, SyntheticValidationSeed = 2;

    /// <summary>
    /// Loads the data set <paramref name="spec"/> names. Validation is the official test split, or a
    /// hold-out of train seeded by <paramref name="seed"/> when <see cref="DataSpec.Holdout"/> is set.
    /// Blocks while a download runs; see <see cref="LoadAsync(DataSpec, int, DatasetResolver, IProgress{DownloadProgress}?, CancellationToken)"/>.
    /// </summary>
    /// <exception cref="DatasetNotFoundException">Unknown name, or the files are nowhere to be found.</exception>
    /// <exception cref="DataFormatException">A file is corrupt or truncated.</exception>
    public static DatasetSplits Load(DataSpec spec, int seed, IProgress<DownloadProgress>? progress, CancellationToken ct) =>
        // Only a download awaits anything, and workers load data outside any synchronisation
        // context, so blocking here cannot deadlock.
        LoadAsync(spec, seed, new DatasetResolver(), progress, ct).GetAwaiter().GetResult();

    /// <summary>As <see cref="Load"/>, with the resolver (cache, system folder, mirror) given.</summary>
    public static Task<DatasetSplits> LoadAsync(
        DataSpec spec, int seed, DatasetResolver resolver, IProgress<DownloadProgress>? progress, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(resolver);
        if (spec.Plugin is not null)
            throw new DatasetNotFoundException($"data set '{spec.Name}' comes from the plug-in {spec.Plugin}, which was not loaded");
        return LoadAsync(new BuiltInDataset(spec.Name, resolver, progress, spec.Download), spec, seed, ct);
    }

    /// <summary>
    /// Opens the data set through <paramref name="provider"/> (a built-in one or a plug-in's) and applies
    /// the spec's hold-out and size limits: the one path every data set takes.
    /// </summary>
    public static async Task<DatasetSplits> LoadAsync(IDatasetProvider provider, DataSpec spec, int seed, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(provider);
        ArgumentNullException.ThrowIfNull(spec);
        var request = new DatasetRequest(spec.Dir, spec.ImageSize, new PluginArgs(spec.Args, "data"), seed);
        var source = await provider.OpenAsync(request, ct).ConfigureAwait(false)
            ?? throw new InvalidDataException($"data set '{spec.Name}': the provider returned no data");
        var (train, validation) = (source.Train, source.Validation);
        if (train is null || train.Count == 0) throw new InvalidDataException($"data set '{spec.Name}' has no training images");
        var channels = train.Shape.Channels;
        var info = new DatasetInfo(spec.Name, train.Shape, train.Classes,
            Statistic(source.Mean, channels, spec.Name, "mean"), Statistic(source.Std, channels, spec.Name, "std"), []);
        if (validation is not null && validation.Shape != train.Shape)
            throw new InvalidDataException($"data set '{spec.Name}': validation images are {validation.Shape}, training images {train.Shape}");

        if (spec.Holdout is { } fraction)
            (train, validation) = DatasetSlicing.HoldOut(train, fraction, seed);
        else if (validation is null)
            (train, validation) = DatasetSlicing.HoldOut(train, DefaultImageFolderHoldout, seed);

        return new DatasetSplits(
            DatasetSlicing.Take(train, spec.LimitTrain),
            DatasetSlicing.Take(validation, spec.LimitTest),
            info);
    }

    private static float[] Statistic(IReadOnlyList<float>? values, int channels, string name, string what)
    {
        if (values is null) return Enumerable.Repeat(0.5f, channels).ToArray();
        if (values.Count != channels)
            throw new InvalidDataException($"data set '{name}': {values.Count} {what} values given for {channels}-channel images");
        return [.. values];
    }

    /// <summary>The built-in data sets (<see cref="Trials.KnownNames.Datasets"/>), as a provider like a plug-in's.</summary>
    private sealed class BuiltInDataset(string name, DatasetResolver resolver, IProgress<DownloadProgress>? progress, bool download) : IDatasetProvider
    {
        public async Task<DatasetSource> OpenAsync(DatasetRequest request, CancellationToken cancellationToken)
        {
            var spec = new DataSpec { Name = name, Dir = request.Dir, ImageSize = request.ImageSize, Download = download };
            var (train, validation, info) = name switch
            {
                "imagefolder" => LoadImageFolder(spec),
                "synthetic" => LoadSynthetic(spec),
                _ => await LoadCatalogAsync(spec, resolver, progress, cancellationToken).ConfigureAwait(false),
            };
            return new DatasetSource(train, validation, info.Mean, info.Std);
        }
    }

    private static async Task<(IImageDataset, IImageDataset?, DatasetInfo)> LoadCatalogAsync(
        DataSpec spec, DatasetResolver resolver, IProgress<DownloadProgress>? progress, CancellationToken ct)
    {
        var info = DatasetCatalog.Find(spec.Name)
            ?? throw new DatasetNotFoundException(
                $"Unknown data set '{spec.Name}': {Trials.KnownNames.OneOf(Trials.KnownNames.Datasets)}");
        var location = await resolver.ResolveAsync(info, spec.Dir, spec.Download, progress, ct).ConfigureAwait(false);
        ct.ThrowIfCancellationRequested();

        switch (spec.Name)
        {
            case "fashion-mnist" or "mnist":
            {
                var train = IdxReader.Read(location.PathOf(info.Files[0].Name), location.PathOf(info.Files[1].Name), info.Classes, info.Shape, info.Name + "/train");
                var test = IdxReader.Read(location.PathOf(info.Files[2].Name), location.PathOf(info.Files[3].Name), info.Classes, info.Shape, info.Name + "/test");
                return (train, test, info);
            }
            case "cifar10":
            {
                var folder = location.PathOf(info.Files[0].Name);
                var train = CifarReader.ReadCifar10(folder, train: true);
                return (train, CifarReader.ReadCifar10(folder, train: false), info with { Classes = train.Classes });
            }
            case "cifar100":
            {
                var folder = location.PathOf(info.Files[0].Name);
                var train = CifarReader.ReadCifar100(folder, train: true);
                return (train, CifarReader.ReadCifar100(folder, train: false), info with { Classes = train.Classes });
            }
            default:
                throw new DatasetNotFoundException($"Data set '{spec.Name}' is in the catalog but has no reader");
        }
    }

    private static (IImageDataset, IImageDataset?, DatasetInfo) LoadImageFolder(DataSpec spec)
    {
        if (string.IsNullOrEmpty(spec.Dir))
            throw new DatasetNotFoundException("imagefolder data needs data.dir (--data-dir): a folder with one subfolder of images per class");
        var size = spec.ImageSize ?? DefaultImageFolderSize;
        IImageDataset train;
        IImageDataset? validation;
        if (PackedImageDataset.IsPacked(spec.Dir))
        {
            // Shards the coordinator packed (data delivery): already decoded at the trial's size.
            var (packedTrain, packedValidation) = PackedImageDataset.OpenSplits(spec.Dir);
            if (packedTrain.Shape.Height != size || packedTrain.Shape.Width != size)
                throw new DataFormatException(packedTrain.Files[0], $"shards hold {packedTrain.Shape} images but data.imageSize is {size}");
            (train, validation) = (packedTrain, packedValidation);
        }
        else
        {
            (train, validation) = ImageFolderDataset.OpenSplits(spec.Dir, size);
        }
        var info = new DatasetInfo("imagefolder", train.Shape, train.Classes,
            DatasetCatalog.ImageNetMean, DatasetCatalog.ImageNetStd, []);
        return (train, validation, info);
    }

    private static (IImageDataset, IImageDataset?, DatasetInfo) LoadSynthetic(DataSpec spec)
    {
        var size = spec.ImageSize ?? DefaultSyntheticSize;
        var shape = new ImageShape(3, size, size);
        var train = new SyntheticDataset(SyntheticTrainCount, shape, 10, SyntheticTrainSeed, "synthetic/train");
        var validation = new SyntheticDataset(SyntheticValidationCount, shape, 10, SyntheticValidationSeed, "synthetic/validation");
        var info = new DatasetInfo("synthetic", shape, train.Classes, [0.5f, 0.5f, 0.5f], [0.5f, 0.5f, 0.5f], []);
        return (train, validation, info);
    }
}

using Orchestrator.Data;

namespace Orchestrator.Sdk;

/// <summary>
/// Opens a data set for a trial: a training split and, optionally, a validation split (without one the
/// worker holds out a seeded tenth of train). The worker then applies <c>data.limitTrain</c>,
/// <c>limitTest</c> and <c>holdout</c>, shards the data among data-parallel ranks and augments it,
/// exactly as for the built-in data sets, which are providers of this kind too.
/// </summary>
/// <remarks>
/// Read lazily where the data is large: <see cref="IImageDataset.CopyImage"/> is called from several
/// loader threads at once. Report bad files with an exception that names the file and the problem.
/// </remarks>
public interface IDatasetProvider
{
    /// <summary>Opens the splits.</summary>
    Task<DatasetSource> OpenAsync(DatasetRequest request, CancellationToken cancellationToken);
}

/// <summary>Where and how to open a data set.</summary>
/// <param name="Dir">The <c>data.dir</c> field: where the files are (may be null).</param>
/// <param name="ImageSize">The <c>data.imageSize</c> field: the side to resize images to, when given.</param>
/// <param name="Args">The <c>data.args</c> section.</param>
/// <param name="Seed">The trial's seed (for a provider that samples or splits).</param>
public sealed record DatasetRequest(string? Dir, int? ImageSize, PluginArgs Args, int Seed);

/// <summary>The splits of an opened data set, with the statistics normalisation uses.</summary>
/// <param name="Train">The training images.</param>
/// <param name="Validation">The validation images, or null for a seeded hold-out of train.</param>
/// <param name="Mean">Per-channel mean of the pixels scaled to [0, 1]; null: 0.5 for every channel.</param>
/// <param name="Std">Per-channel standard deviation of the scaled pixels; null: 0.5 for every channel.</param>
public sealed record DatasetSource(IImageDataset Train, IImageDataset? Validation, IReadOnlyList<float>? Mean = null, IReadOnlyList<float>? Std = null);

using Orchestrator.Data;
using Orchestrator.Sdk;
using Orchestrator.Trials;

namespace Orchestrator.Worker.Plugins;

/// <summary>
/// The plug-ins one trial uses (its <c>model.plugin</c> and <c>data.plugin</c>), each loaded into its own
/// collectible context for the trial's lifetime; disposing unloads them. Every call into plug-in code
/// goes through a guard: an exception becomes a <see cref="PluginException"/> naming the plug-in, and
/// a factory or data set that does not return within <see cref="CallTimeout"/> fails the trial.
/// </summary>
public sealed class TrialPlugins : IDisposable
{
    /// <summary>The longest a plug-in may take to build a model or open a data set.</summary>
    public static readonly TimeSpan DefaultCallTimeout = TimeSpan.FromMinutes(10);

    private readonly List<PluginAssembly> _assemblies;

    private TrialPlugins(List<PluginAssembly> assemblies, IModelFactory? model, IDatasetProvider? dataset,
        IReadOnlyList<KeyValuePair<string, IEvaluationMetric>> metrics, TimeSpan timeout)
    {
        _assemblies = assemblies;
        Model = model;
        Dataset = dataset;
        Metrics = metrics;
        CallTimeout = timeout;
    }

    /// <summary>No plug-ins: the built-in models and data sets only.</summary>
    public static TrialPlugins None { get; } = new([], null, null, [], DefaultCallTimeout);

    /// <summary>The extra validation metrics (guarded), by the name they are reported under (without "val_").</summary>
    public IReadOnlyList<KeyValuePair<string, IEvaluationMetric>> Metrics { get; }

    /// <summary>The plug-in's model factory (guarded), or null for a built-in model.</summary>
    public IModelFactory? Model { get; }

    /// <summary>The plug-in's data set provider (guarded), or null for a built-in data set.</summary>
    public IDatasetProvider? Dataset { get; }

    /// <summary>The plug-in assemblies loaded for the trial.</summary>
    internal IReadOnlyList<PluginAssembly> Assemblies => _assemblies;

    /// <summary>The longest one call into plug-in code may take.</summary>
    public TimeSpan CallTimeout { get; }

    /// <summary>
    /// Loads the plug-ins <paramref name="spec"/> names and creates its exports (so a bad plug-in is
    /// refused here, before any data is read). Throws <see cref="PluginException"/>.
    /// </summary>
    /// <param name="spec">The trial.</param>
    /// <param name="callTimeout">The longest one call into plug-in code may take (default <see cref="DefaultCallTimeout"/>).</param>
    /// <param name="locate">
    /// Where the file a spec's <c>plugin</c> names is on this machine (a worker fetches shipped
    /// <c>bundle:</c> references); by default the path itself. Messages keep the spec's wording.
    /// </param>
    public static TrialPlugins Load(TrialSpec spec, TimeSpan? callTimeout = null, Func<string, string>? locate = null)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (spec.Model.Plugin is null && spec.Data.Plugin is null && spec.Metrics is not { Count: > 0 }) return None;
        var timeout = callTimeout ?? DefaultCallTimeout;
        var assemblies = new List<PluginAssembly>();
        try
        {
            PluginAssembly Open(string plugin)
            {
                var full = Path.GetFullPath(locate?.Invoke(plugin) ?? plugin);
                var open = assemblies.Find(a => a.Path == full);
                if (open is null) assemblies.Add(open = PluginAssembly.Open(full, plugin));
                return open;
            }

            IModelFactory? model = null;
            IDatasetProvider? dataset = null;
            if (spec.Model.Plugin is { } modelPlugin)
            {
                var assembly = Open(modelPlugin);
                model = new GuardedModelFactory(assembly.Create<IModelFactory>(spec.Model.Name, "model"), modelPlugin, spec.Model.Name, timeout);
            }
            if (spec.Data.Plugin is { } dataPlugin)
            {
                var assembly = Open(dataPlugin);
                dataset = new GuardedDatasetProvider(assembly.Create<IDatasetProvider>(spec.Data.Name, "data set"), dataPlugin, spec.Data.Name, timeout);
            }
            var metrics = new List<KeyValuePair<string, IEvaluationMetric>>();
            foreach (var m in spec.Metrics ?? [])
            {
                var assembly = Open(m.Plugin);
                metrics.Add(new(m.Name, new GuardedMetric(assembly.Create<IEvaluationMetric>(m.Name, "metric"), m.Plugin, m.Name)));
            }
            return new TrialPlugins(assemblies, model, dataset, metrics, timeout);
        }
        catch
        {
            foreach (var a in assemblies) a.Dispose();
            throw;
        }
    }

    /// <summary>The trial's data: through the plug-in's provider, or the built-in loader (downloads included).</summary>
    public DatasetSplits LoadData(DataSpec spec, int seed, IProgress<DownloadProgress>? progress, CancellationToken ct) =>
        Dataset is null
            ? DatasetLoader.Load(spec, seed, progress, ct)
            // Trials load data on their own thread, outside any synchronisation context: blocking cannot deadlock.
            : DatasetLoader.LoadAsync(Dataset, spec, seed, ct).GetAwaiter().GetResult();

    /// <summary>Unloads the plug-ins' contexts; the trial's model and data must be disposed first.</summary>
    public void Dispose()
    {
        foreach (var a in _assemblies) a.Dispose();
        _assemblies.Clear();
    }
}

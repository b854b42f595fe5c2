using Orchestrator.Data;
using Orchestrator.Sdk;
using TorchSharp;
using static TorchSharp.torch;

namespace Orchestrator.Worker.Plugins;

/// <summary>
/// Runs a plug-in's factory on a pool thread with a deadline: a factory that throws fails the trial with
/// its own message, one that never returns fails it after the timeout (its thread is abandoned;
/// .NET cannot stop it).
/// </summary>
internal sealed class GuardedModelFactory(IModelFactory inner, string plugin, string name, TimeSpan timeout) : IModelFactory
{
    public nn.Module<Tensor, Tensor> Create(ModelRequest request)
    {
        var what = $"model '{name}'";
        return PluginCall.Run(plugin, what, timeout, () => Task.Run(() => inner.Create(request)), CancellationToken.None)
            ?? throw new PluginException(plugin, $"{what} returned no module");
    }
}

/// <summary>Opens a plug-in's data set with a deadline and guards every read of its images.</summary>
internal sealed class GuardedDatasetProvider(IDatasetProvider inner, string plugin, string name, TimeSpan timeout) : IDatasetProvider
{
    public async Task<DatasetSource> OpenAsync(DatasetRequest request, CancellationToken cancellationToken)
    {
        var what = $"data set '{name}'";
        var source = await PluginCall.RunAsync(plugin, what, timeout, () => Task.Run(() => inner.OpenAsync(request, cancellationToken), cancellationToken), cancellationToken)
            .ConfigureAwait(false) ?? throw new PluginException(plugin, $"{what} returned no data");
        if (source.Train is null) throw new PluginException(plugin, $"{what} returned no training split");
        return source with
        {
            Train = new GuardedDataset(source.Train, plugin, what),
            Validation = source.Validation is null ? null : new GuardedDataset(source.Validation, plugin, what),
        };
    }
}

/// <summary>A plug-in's metric whose failures name the plug-in.</summary>
internal sealed class GuardedMetric(IEvaluationMetric inner, string plugin, string name) : IEvaluationMetric
{
    public double Compute(EvaluationResult result)
    {
        try
        {
            return inner.Compute(result);
        }
        catch (Exception e)
        {
            throw PluginException.Failed(plugin, $"metric '{name}'", e);
        }
    }
}

/// <summary>A plug-in's data set whose failures name the plug-in (loader threads rethrow them to the trial).</summary>
internal sealed class GuardedDataset(IImageDataset inner, string plugin, string what) : IImageDataset
{
    public string Name => inner.Name;
    public int Count => inner.Count;
    public ImageShape Shape => inner.Shape;
    public IReadOnlyList<string> Classes => inner.Classes;

    public int GetLabel(int index)
    {
        try
        {
            return inner.GetLabel(index);
        }
        catch (Exception e)
        {
            throw PluginException.Failed(plugin, $"{what}, reading the label of image {index},", e);
        }
    }

    public void CopyImage(int index, Span<byte> destination)
    {
        try
        {
            inner.CopyImage(index, destination);
        }
        catch (Exception e)
        {
            throw PluginException.Failed(plugin, $"{what}, reading image {index},", e);
        }
    }
}

/// <summary>One call into plug-in code: a deadline, and its exceptions named after the plug-in.</summary>
internal static class PluginCall
{
    public static T Run<T>(string plugin, string what, TimeSpan timeout, Func<Task<T>> call, CancellationToken ct) =>
        RunAsync(plugin, what, timeout, call, ct).GetAwaiter().GetResult();

    public static async Task<T> RunAsync<T>(string plugin, string what, TimeSpan timeout, Func<Task<T>> call, CancellationToken ct)
    {
        try
        {
            return await call().WaitAsync(timeout, ct).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            throw new PluginException(plugin, $"{what} did not return within {timeout.TotalSeconds:0} s");
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception e)
        {
            throw PluginException.Failed(plugin, what, e);
        }
    }
}

using System.Text;
using Google.Protobuf;
using Orchestrator.Checkpoints;
using Orchestrator.Plugins;
using Orchestrator.Protocol.V1;
using Orchestrator.Specs;
using Orchestrator.Sweeps;
using Orchestrator.Worker.Plugins;
using YamlDotNet.RepresentationModel;

namespace Orchestrator.Cli.Remote;

/// <summary>
/// `orch submit`'s half of plug-in shipping: uploads each plug-in the sweep names (its assembly, the
/// assemblies beside it that it needs, and a manifest of them; <see cref="PluginBundle"/>) and
/// rewrites the sweep's <c>plugin:</c> paths into the bundle references the workers fetch.
/// </summary>
internal static class PluginShipping
{
    /// <summary>The sweep text with each plug-in path (model, data, trial.metrics) replaced by its uploaded bundle's reference.</summary>
    public static async Task<string> ShipAsync(string yaml, string? fileName, CoordinatorConnection c, CancellationToken ct)
    {
        Orchestrator.Trials.TrialSpec trial;
        try
        {
            trial = ValidatedSweep.Parse(yaml, fileName, SweepLimits.Default).BaseTrial;
        }
        catch (SpecException)
        {
            // The coordinator's validation says what is wrong.
            return yaml;
        }
        var references = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var path in new[] { trial.Model.Plugin, trial.Data.Plugin }.Concat(trial.Metrics?.Select(m => m.Plugin) ?? []))
            if (path is not null && !references.ContainsKey(path) && !PluginBundle.TryParse(path, out _, out _))
                references[path] = await UploadBundleAsync(path, c, ct).ConfigureAwait(false);
        return references.Count == 0 ? yaml : Rewrite(yaml, references);
    }

    private static async Task<string> UploadBundleAsync(string path, CoordinatorConnection c, CancellationToken ct)
    {
        var files = new List<BundleFile>();
        foreach (var file in PluginFiles.Collect(path))
        {
            var sha = PluginBundle.Sha256Of(file);
            var size = new FileInfo(file).Length;
            if (size > PluginBundle.MaxFileBytes) throw new InvalidOperationException($"plug-in {path}: {file} is {size} bytes, at most {PluginBundle.MaxFileBytes} can be shipped");
            var stream = File.OpenRead(file);
            await using (stream.ConfigureAwait(false))
                await UploadAsync(stream, sha, size, c, ct).ConfigureAwait(false);
            files.Add(new BundleFile(Path.GetFileName(file), sha, size));
        }
        var manifest = Encoding.UTF8.GetBytes(PluginBundle.WriteManifest(files));
        var manifestSha = PluginBundle.Sha256Of(manifest);
        using (var memory = new MemoryStream(manifest))
            await UploadAsync(memory, manifestSha, manifest.Length, c, ct).ConfigureAwait(false);
        return PluginBundle.Reference(manifestSha, Path.GetFileName(path));
    }

    private static async Task UploadAsync(Stream content, string sha256, long size, CoordinatorConnection c, CancellationToken ct)
    {
        // A deadline per file: plug-ins are small, and a stalled upload must not hang submit.
        using var call = c.Plugins.UploadPluginFile(new Grpc.Core.CallOptions(c.Headers, DateTime.UtcNow.AddMinutes(5), ct));
        var first = true;
        await foreach (var chunk in ChunkedFile.ReadAsync(content, ChunkedFile.DefaultChunkSize, ct).ConfigureAwait(false))
        {
            var message = new PluginFileChunk { Data = ByteString.CopyFrom(chunk.Data.Span) };
            if (first)
            {
                (message.Sha256, message.TotalSize) = (sha256, size);
                first = false;
            }
            await call.RequestStream.WriteAsync(message, ct).ConfigureAwait(false);
        }
        await call.RequestStream.CompleteAsync().ConfigureAwait(false);
        await call.ResponseAsync.ConfigureAwait(false);
    }

    /// <summary>Replaces the <c>plugin:</c> scalars of the model and data sections and of trial.metrics in place, keeping the rest of the text as written.</summary>
    internal static string Rewrite(string yaml, IReadOnlyDictionary<string, string> references)
    {
        var stream = new YamlStream();
        stream.Load(new StringReader(yaml));
        var edits = new List<(int Start, int End, string Text)>();
        void Edit(YamlNode? node)
        {
            if (node is YamlMappingNode mapping && mapping.Children.TryGetValue(new YamlScalarNode("plugin"), out var value)
                && value is YamlScalarNode { Value: { } path } scalar && references.TryGetValue(path, out var reference))
                edits.Add(((int)scalar.Start.Index, (int)scalar.End.Index, $"\"{reference}\""));
        }
        static YamlNode? Child(YamlNode? node, string key) =>
            node is YamlMappingNode m && m.Children.TryGetValue(new YamlScalarNode(key), out var child) ? child : null;

        if (stream.Documents.Count > 0 && stream.Documents[0].RootNode is YamlMappingNode root)
        {
            Edit(Child(root, "model"));
            Edit(Child(root, "data"));
            if (Child(Child(root, "trial"), "metrics") is YamlSequenceNode metrics)
                foreach (var metric in metrics) Edit(metric);
        }
        var text = new StringBuilder(yaml);
        foreach (var (start, end, replacement) in edits.OrderByDescending(e => e.Start))
            text.Remove(start, end - start).Insert(start, replacement);
        return text.ToString();
    }
}

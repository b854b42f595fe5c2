using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;

namespace Orchestrator.Worker.Plugins;

/// <summary>The files a plug-in needs on a worker: its assembly and the assemblies beside it that it references, transitively.</summary>
public static class PluginFiles
{
    /// <summary>
    /// The assembly at <paramref name="assemblyPath"/> and every assembly in its folder it references
    /// (directly or through another), except those the worker provides (the SDK, TorchSharp).
    /// Framework assemblies are the worker's too. Native libraries are not collected.
    /// </summary>
    public static IReadOnlyList<string> Collect(string assemblyPath)
    {
        var main = Path.GetFullPath(assemblyPath);
        var folder = Path.GetDirectoryName(main)!;
        var found = new List<string> { main };
        var pending = new Queue<string>(found);
        while (pending.Count > 0)
        {
            foreach (var name in References(pending.Dequeue()))
            {
                if (PluginLoadContext.IsShared(name)) continue;
                var candidate = Path.Combine(folder, name + ".dll");
                if (!File.Exists(candidate) || found.Contains(candidate, StringComparer.Ordinal)) continue;
                found.Add(candidate);
                pending.Enqueue(candidate);
            }
        }
        return found;
    }

    private static List<string> References(string path)
    {
        using var stream = File.OpenRead(path);
        using var pe = new PEReader(stream);
        if (!pe.HasMetadata) return [];
        var metadata = pe.GetMetadataReader();
        return [.. metadata.AssemblyReferences.Select(h => metadata.GetString(metadata.GetAssemblyReference(h).Name))];
    }
}

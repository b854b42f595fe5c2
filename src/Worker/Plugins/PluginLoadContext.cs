using System.Reflection;
using System.Runtime.Loader;
using Orchestrator.Sdk;

namespace Orchestrator.Worker.Plugins;

/// <summary>
/// An isolated, collectible load context for one plug-in assembly and its dependencies. The SDK and
/// TorchSharp come from the worker's own (default) context, so that the plug-in's
/// <see cref="IModelFactory"/> and its modules are the worker's types; everything else the plug-in
/// ships (next to it, or as its .deps.json says) is loaded here and unloaded with the context.
/// </summary>
internal sealed class PluginLoadContext : AssemblyLoadContext
{
    /// <summary>Assemblies always taken from the worker, whatever copies the plug-in's folder holds.</summary>
    private static readonly HashSet<string> Shared = new(StringComparer.OrdinalIgnoreCase)
    {
        SdkVersion.AssemblyName, "TorchSharp", "Orchestrator.Shared",
    };

    private readonly AssemblyDependencyResolver _resolver;
    private readonly string _folder;

    public PluginLoadContext(string assemblyPath) : base("plugin:" + Path.GetFileName(assemblyPath), isCollectible: true)
    {
        _resolver = new AssemblyDependencyResolver(assemblyPath);
        _folder = Path.GetDirectoryName(assemblyPath)!;
    }

    /// <summary>Whether the worker provides the assembly named <paramref name="name"/> to every plug-in.</summary>
    public static bool IsShared(string name) => Shared.Contains(name);

    protected override Assembly? Load(AssemblyName assemblyName)
    {
        if (assemblyName.Name is null || Shared.Contains(assemblyName.Name)) return null;
        var path = _resolver.ResolveAssemblyToPath(assemblyName);
        if (path is null)
        {
            // A plug-in copied without its .deps.json: its dependencies lie next to it.
            var sibling = Path.Combine(_folder, assemblyName.Name + ".dll");
            if (File.Exists(sibling)) path = sibling;
        }
        // Not the plug-in's: the framework's, from the default context.
        return path is null ? null : LoadFromAssemblyPath(path);
    }

    protected override IntPtr LoadUnmanagedDll(string unmanagedDllName) =>
        _resolver.ResolveUnmanagedDllToPath(unmanagedDllName) is { } path ? LoadUnmanagedDllFromPath(path) : IntPtr.Zero;
}

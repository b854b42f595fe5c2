using System.Reflection;
using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;
using Orchestrator.Sdk;

namespace Orchestrator.Worker.Plugins;

/// <summary>
/// One loaded plug-in assembly: checked before it is loaded (a .NET assembly, built against this
/// SDK major), loaded into its own <see cref="PluginLoadContext"/>, with its exports by name.
/// Disposing unloads the context; the assembly's types and objects must be out of use by then.
/// </summary>
public sealed class PluginAssembly : IDisposable
{
    private readonly PluginLoadContext _context;
    private readonly Dictionary<string, List<Type>> _exports;

    private PluginAssembly(string displayName, string path, PluginLoadContext context, Dictionary<string, List<Type>> exports)
    {
        DisplayName = displayName;
        Path = path;
        _context = context;
        _exports = exports;
    }

    /// <summary>The plug-in as the spec writes it (used in every message).</summary>
    public string DisplayName { get; }

    /// <summary>The context the plug-in lives in (tests watch it being collected).</summary>
    internal System.Runtime.Loader.AssemblyLoadContext LoadContext => _context;

    /// <summary>The full path of the assembly file.</summary>
    public string Path { get; }

    /// <summary>
    /// Checks and loads the assembly at <paramref name="path"/>. Throws <see cref="PluginException"/>
    /// when the file is missing, is not a .NET assembly, was built against another SDK major, or its
    /// types cannot be loaded.
    /// </summary>
    public static PluginAssembly Open(string path, string? displayName = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        displayName ??= path;
        var full = System.IO.Path.GetFullPath(path);
        if (!File.Exists(full)) throw new PluginException(displayName, $"file not found ({full})");
        CheckSdkReference(full, displayName);
        var context = new PluginLoadContext(full);
        try
        {
            var assembly = context.LoadFromAssemblyPath(full);
            return new PluginAssembly(displayName, full, context, Exports(assembly, displayName));
        }
        catch (Exception e)
        {
            context.Unload();
            throw e switch
            {
                PluginException p => p,
                BadImageFormatException or FileLoadException => new PluginException(displayName, $"cannot be loaded: {e.Message}", e),
                _ => PluginException.Failed(displayName, "loading it", e),
            };
        }
    }

    /// <summary>Names exported by classes that implement <typeparamref name="T"/>, sorted.</summary>
    public IReadOnlyList<string> ExportedNames<T>() =>
        [.. _exports.Where(kv => kv.Value.Any(typeof(T).IsAssignableFrom)).Select(kv => kv.Key).Order(StringComparer.Ordinal)];

    /// <summary>
    /// Creates the export <paramref name="name"/> of kind <typeparamref name="T"/> (<see cref="IModelFactory"/>
    /// or <see cref="IDatasetProvider"/>) with its constructor without parameters.
    /// </summary>
    /// <param name="kind">"model" or "data set", for messages.</param>
    public T Create<T>(string name, string kind) where T : class
    {
        if (!_exports.TryGetValue(name, out var types))
        {
            var names = ExportedNames<T>();
            throw new PluginException(DisplayName, $"exports no {kind} '{name}'" +
                (names.Count == 0 ? $": it exports no {kind} at all (mark a class that implements {typeof(T).Name} with [PluginExport(\"{name}\")])" : $" (it exports: {string.Join(", ", names)})"));
        }
        var type = types.FirstOrDefault(typeof(T).IsAssignableFrom)
            ?? throw new PluginException(DisplayName, $"{types[0].FullName} is exported as '{name}' but does not implement {typeof(T).FullName}, so it is not a {kind}");
        if (type.IsAbstract || type.GetConstructor(Type.EmptyTypes) is null)
            throw new PluginException(DisplayName, $"{type.FullName} (exported as '{name}') needs a public constructor without parameters");
        try
        {
            return (T)Activator.CreateInstance(type)!;
        }
        catch (Exception e)
        {
            throw PluginException.Failed(DisplayName, $"the constructor of {type.FullName} (exported as '{name}')", e);
        }
    }

    /// <summary>Unloads the plug-in's context (collected once nothing uses its types).</summary>
    public void Dispose() => _context.Unload();

    /// <summary>
    /// Reads the assembly's metadata without loading it: a corrupt file or one built against another
    /// SDK major must be refused before any of its code can run.
    /// </summary>
    private static void CheckSdkReference(string path, string displayName)
    {
        Version? sdk = null;
        try
        {
            using var stream = File.OpenRead(path);
            using var pe = new PEReader(stream);
            if (!pe.HasMetadata) throw new BadImageFormatException("no .NET metadata");
            var metadata = pe.GetMetadataReader();
            if (!metadata.IsAssembly) throw new BadImageFormatException("a module, not an assembly");
            foreach (var handle in metadata.AssemblyReferences)
            {
                var reference = metadata.GetAssemblyReference(handle);
                if (metadata.StringComparer.Equals(reference.Name, SdkVersion.AssemblyName)) sdk = reference.Version;
            }
        }
        catch (Exception e) when (e is BadImageFormatException or InvalidOperationException)
        {
            throw new PluginException(displayName, $"is not a .NET assembly, or is corrupt or truncated ({e.Message})", e);
        }
        if (sdk is null)
            throw new PluginException(displayName, $"does not reference {SdkVersion.AssemblyName}: it exports nothing a sweep can use (see docs/plugins.md)");
        if (sdk.Major != SdkVersion.Major)
            throw new PluginException(displayName,
                $"was built against {SdkVersion.AssemblyName} {sdk.ToString(2)}, this worker has {SdkVersion.Major}.{SdkVersion.Minor}: rebuild it against version {SdkVersion.Major}.x");
    }

    private static Dictionary<string, List<Type>> Exports(Assembly assembly, string displayName)
    {
        Type[] types;
        try
        {
            types = assembly.GetTypes();
        }
        catch (ReflectionTypeLoadException e)
        {
            var first = e.LoaderExceptions.FirstOrDefault(x => x is not null);
            throw new PluginException(displayName, $"its types cannot be loaded (a dependency is missing?): {first?.Message ?? e.Message}", e);
        }
        var exports = new Dictionary<string, List<Type>>(StringComparer.Ordinal);
        foreach (var type in types)
        {
            if (type.GetCustomAttribute<PluginExportAttribute>() is not { } export) continue;
            if (!exports.TryGetValue(export.Name, out var list)) exports[export.Name] = list = [];
            list.Add(type);
        }
        return exports;
    }
}

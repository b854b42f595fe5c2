namespace Orchestrator.Sdk;

/// <summary>
/// Exports a class of a plug-in under the name sweeps use: <c>model: { plugin: MyModels.dll, name: my-net }</c>
/// finds the class marked <c>[PluginExport("my-net")]</c> that implements <see cref="IModelFactory"/>; a
/// <c>data:</c> section finds one that implements <see cref="IDatasetProvider"/>. The class needs a public
/// constructor without parameters. Only exported classes are ever created.
/// </summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
public sealed class PluginExportAttribute : Attribute
{
    /// <summary>Exports the class as <paramref name="name"/> (letters, digits, '_', '-').</summary>
    public PluginExportAttribute(string name) => Name = name;

    /// <summary>The name a sweep's <c>name:</c> field gives.</summary>
    public string Name { get; }
}

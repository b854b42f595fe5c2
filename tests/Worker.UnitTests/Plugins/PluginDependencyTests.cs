using Microsoft.CodeAnalysis;
using Orchestrator.Data;
using Orchestrator.Sdk;
using Orchestrator.Trials;
using Orchestrator.Worker.Models;
using Orchestrator.Worker.Plugins;
using Orchestrator.Worker.UnitTests.Support;

namespace Orchestrator.Worker.UnitTests.Plugins;

/// <summary>A plug-in's own dependencies load from beside it, and they are what submit ships; the SDK is the worker's.</summary>
[Collection(SerialTorchCollection.Name)]
public sealed class PluginDependencyTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("orch-plugin-deps-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void The_sdk_version_constant_is_the_assemblys_major_version() =>
        Assert.Equal(SdkVersion.Major, typeof(IModelFactory).Assembly.GetName().Version!.Major);

    [Fact]
    public void A_dependency_beside_the_plugin_is_loaded_with_it_and_collected_for_shipping_without_the_sdk()
    {
        var folder = Path.Combine(_dir, "out");
        var dependency = PluginCompiler.Compile(folder, "Widths", "public static class Widths { public static int Of(string s) => s == \"wide\" ? 7 : 3; }", []);
        // Copies of what the worker provides, as a careless build leaves them: ignored when loading, never shipped.
        File.Copy(typeof(IModelFactory).Assembly.Location, Path.Combine(folder, "Orchestrator.Sdk.dll"));
        var plugin = PluginCompiler.Compile(folder, "Uses.Widths", """
            using Orchestrator.Sdk;
            using TorchSharp;
            using static TorchSharp.torch;
            [PluginExport("dep-net")]
            public sealed class DepNet : IModelFactory
            {
                public nn.Module<Tensor, Tensor> Create(ModelRequest r) => nn.Linear(r.Input.Size, Widths.Of(r.Args.GetString("kind", "")));
            }
            """, [.. PluginCompiler.Sdk, MetadataReference.CreateFromFile(dependency)]);

        Assert.Equal([plugin, dependency], PluginFiles.Collect(plugin));

        var spec = new ModelSpec { Plugin = plugin, Name = "dep-net", Args = new() { ["kind"] = "wide" } };
        using var plugins = TrialPlugins.Load(new TrialSpec { Model = spec });
        using var model = ModelRegistry.Create(spec, new ImageShape(1, 2, 2), 7, plugins);
        Assert.Equal([7L, 4L], model.parameters().First().shape);
    }
}

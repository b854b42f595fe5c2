using System.Runtime.CompilerServices;
using Orchestrator.Data;
using Orchestrator.Sdk;
using Orchestrator.Trials;
using Orchestrator.Worker.Models;
using Orchestrator.Worker.Plugins;
using Orchestrator.Worker.UnitTests.Support;
using TorchSharp;

namespace Orchestrator.Worker.UnitTests.Plugins;

/// <summary>Plug-ins load into their own context, and every way one can be wrong is one message naming it.</summary>
[Collection(SerialTorchCollection.Name)]
public sealed class PluginLoadingTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("orch-plugins-").FullName;
    private readonly string _plugin;

    public PluginLoadingTests() => _plugin = PluginCompiler.Compile(Path.Combine(_dir, "good"), "Test.Plugin", PluginCompiler.Source);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static TrialSpec Model(string plugin, string name, Dictionary<string, string>? args = null) =>
        new() { Model = new ModelSpec { Plugin = plugin, Name = name, Args = args } };

    private static PluginException Refused(TrialSpec spec, TimeSpan? timeout = null) =>
        Assert.Throws<PluginException>(() =>
        {
            using var plugins = TrialPlugins.Load(spec, timeout);
            using var model = ModelRegistry.Create(spec.Model, new ImageShape(1, 4, 4), 2, plugins);
        });

    [Fact]
    public void A_plugins_model_is_built_with_its_args_and_trains_through_the_registry()
    {
        using var plugins = TrialPlugins.Load(Model(_plugin, "good-net", new() { ["hidden"] = "5" }));
        using var model = ModelRegistry.Create(new ModelSpec { Plugin = _plugin, Name = "good-net", Args = new() { ["hidden"] = "5" } }, new ImageShape(1, 4, 4), 3, plugins);

        Assert.Equal(3, model.NumClasses);
        Assert.Equal(["net.fc1.weight", "net.fc1.bias", "net.fc2.weight", "net.fc2.bias"], model.named_parameters().Select(p => p.name));
        Assert.Equal([5L, 16L], model.named_parameters().First().parameter.shape);
        using var x = torch.rand(6, 1, 4, 4);
        using var y = model.forward(x);
        Assert.Equal([6L, 3L], y.shape);
        // The module's type is the worker's own: the SDK and TorchSharp are shared, not loaded twice.
        Assert.Same(typeof(torch.nn.Module<torch.Tensor, torch.Tensor>).Assembly, model.named_children().Single().module.GetType().BaseType!.Assembly);
    }

    [Fact]
    public void A_missing_assembly_is_refused_naming_it() =>
        Assert.Equal($"plug-in {Path.Combine(_dir, "nope.dll")}: file not found ({Path.Combine(_dir, "nope.dll")})",
            Refused(Model(Path.Combine(_dir, "nope.dll"), "good-net")).Message);

    [Fact]
    public void A_corrupt_or_truncated_assembly_is_refused_naming_it()
    {
        var garbage = Path.Combine(_dir, "garbage.dll");
        File.WriteAllBytes(garbage, [.. Enumerable.Range(0, 4096).Select(i => (byte)(i * 31))]);
        var e = Refused(Model(garbage, "good-net"));
        Assert.StartsWith($"plug-in {garbage}: is not a .NET assembly, or is corrupt or truncated", e.Message);

        var truncated = Path.Combine(_dir, "truncated.dll");
        var bytes = File.ReadAllBytes(_plugin);
        File.WriteAllBytes(truncated, bytes[..(bytes.Length / 3)]);
        e = Refused(Model(truncated, "good-net"));
        Assert.StartsWith($"plug-in {truncated}: ", e.Message);
        Assert.Contains("corrupt or truncated", e.Message);
    }

    [Fact]
    public void A_plugin_built_against_another_sdk_major_is_refused_before_it_is_loaded()
    {
        var path = PluginCompiler.Compile(Path.Combine(_dir, "v2"), "Future.Plugin",
            "[Orchestrator.Sdk.PluginExport(\"net\")] public sealed class Net { }", [PluginCompiler.OtherSdkMajor(_dir, 2)]);
        Assert.Equal($"plug-in {path}: was built against Orchestrator.Sdk 2.0, this worker has {SdkVersion.Major}.{SdkVersion.Minor}: rebuild it against version {SdkVersion.Major}.x",
            Refused(Model(path, "net")).Message);
    }

    [Fact]
    public void An_assembly_that_does_not_use_the_sdk_is_refused()
    {
        var path = PluginCompiler.Compile(Path.Combine(_dir, "plain"), "Plain", "public sealed class Net { }", []);
        Assert.Contains("does not reference Orchestrator.Sdk", Refused(Model(path, "net")).Message);
    }

    [Fact]
    public void A_name_the_plugin_does_not_export_is_refused_with_the_names_it_does() =>
        Assert.Equal($"plug-in {_plugin}: exports no model 'wide-net' (it exports: ctor-throws, good-net, hangs, throws-forward)",
            Refused(Model(_plugin, "wide-net")).Message);

    [Fact]
    public void A_type_that_does_not_implement_the_interface_is_refused() =>
        Assert.Equal($"plug-in {_plugin}: Test.Plugin.NotAFactory is exported as 'not-a-factory' but does not implement Orchestrator.Sdk.IModelFactory, so it is not a model",
            Refused(Model(_plugin, "not-a-factory")).Message);

    [Fact]
    public void A_constructor_that_throws_fails_with_the_plugins_own_message() =>
        Assert.Equal($"plug-in {_plugin}: the constructor of Test.Plugin.CtorThrows (exported as 'ctor-throws') threw InvalidOperationException: no licence key found",
            Refused(Model(_plugin, "ctor-throws")).Message);

    [Fact]
    public void A_factory_that_never_returns_fails_after_the_deadline() =>
        Assert.Equal($"plug-in {_plugin}: model 'hangs' did not return within 1 s",
            Refused(Model(_plugin, "hangs"), TimeSpan.FromSeconds(1)).Message);

    [Fact]
    public void A_forward_pass_that_throws_names_the_plugin()
    {
        using var plugins = TrialPlugins.Load(Model(_plugin, "throws-forward"));
        using var model = ModelRegistry.Create(new ModelSpec { Plugin = _plugin, Name = "throws-forward" }, new ImageShape(1, 4, 4), 2, plugins);
        using var x = torch.rand(2, 1, 4, 4);
        var e = Assert.Throws<PluginException>(() => model.forward(x));
        Assert.Equal($"plug-in {_plugin}: model 'throws-forward', in its forward pass, threw InvalidOperationException: shape mismatch in layer 3", e.Message);
    }

    [Fact]
    public void A_plugins_data_set_loads_through_the_common_path_and_its_read_errors_name_the_plugin()
    {
        var spec = new TrialSpec { Data = new DataSpec { Plugin = _plugin, Name = "blocks", LimitTrain = 20 } };
        using (var plugins = TrialPlugins.Load(spec))
        {
            var data = plugins.LoadData(spec.Data, 0, null, CancellationToken.None);
            Assert.Equal((20, 4, 2), (data.Train.Count, data.Validation.Count, data.Info.NumClasses));
            var image = new byte[16];
            data.Train.CopyImage(0, image);
            Assert.True(image[0] is 10 or 240);
        }

        spec.Data.Args = new() { ["broken"] = "true" };
        using (var plugins = TrialPlugins.Load(spec))
        {
            var data = plugins.LoadData(spec.Data, 0, null, CancellationToken.None);
            var e = Assert.Throws<PluginException>(() => data.Train.CopyImage(0, new byte[16]));
            // Image 0 of the (held-out) training split is some image of the plug-in's set.
            Assert.Matches($"^plug-in {System.Text.RegularExpressions.Regex.Escape(_plugin)}: data set 'blocks', reading image ([0-9]+), threw InvalidDataException: image \\1: bad row$", e.Message);
        }
    }

    [Fact]
    public void A_model_from_a_plugin_without_its_plugins_loaded_is_refused() =>
        Assert.Contains("comes from the plug-in x.dll, which was not loaded",
            Assert.Throws<ArgumentException>(() => ModelRegistry.Create(new ModelSpec { Plugin = "x.dll", Name = "n" }, new ImageShape(1, 4, 4), 2)).Message);

    [Fact]
    public void A_trials_plugin_context_is_unloaded_when_the_trial_ends()
    {
        var context = LoadAndUse(_plugin);
        for (var i = 0; context.IsAlive && i < 20; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        Assert.False(context.IsAlive, "the plug-in's load context is still alive after the trial ended");
    }

    // Out of line, so that no local of the test method keeps the plug-in's objects alive.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static WeakReference LoadAndUse(string plugin)
    {
        var spec = new TrialSpec { Data = new DataSpec { Plugin = plugin, Name = "blocks" } };
        using var plugins = TrialPlugins.Load(spec);
        var data = plugins.LoadData(spec.Data, 0, null, CancellationToken.None);
        Assert.Equal(36, data.Train.Count);
        return new WeakReference(plugins.Assemblies.Single().LoadContext);
    }
}

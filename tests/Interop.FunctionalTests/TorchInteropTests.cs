using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp.PyBridge;
using Xunit.Abstractions;

namespace Orchestrator.Interop.FunctionalTests;

/// <summary>
/// The .pt and .safetensors files orch writes (TorchSharp.PyBridge, as <c>orch export</c> and <c>orch best
/// --download</c> do) load strictly in Debian's PyTorch into tests/Interop.FunctionalTests/torch_models.py,
/// and give TorchSharp's logits.
/// </summary>
[Collection(InteropCollection.Name)]
public sealed class TorchInteropTests(InteropModels models, ITestOutputHelper output)
{
    private static readonly string[] Formats = ["pytorch", "safetensors"];

    [Theory]
    [MemberData(nameof(ModelCase.Names), MemberType = typeof(ModelCase))]
    public void PyTorch_loads_the_pt_and_safetensors_exports_into_its_own_model_definition_and_gives_the_same_logits(string name)
    {
        var p = models.Get(name);
        var c = p.Case;
        var inputs = models.File($"{name}.inputs.f32");
        File.WriteAllBytes(inputs, MemoryMarshal.AsBytes(p.Normalized.contiguous().data<float>().ToArray().AsSpan()).ToArray());
        var exports = new JsonArray();
        foreach (var format in Formats)
        {
            var weights = models.File($"{name}.{(format == "pytorch" ? "pt" : "safetensors")}");
            if (format == "pytorch") p.Model.save_py(weights);
            else p.Model.save_safetensors(weights);
            exports.Add(new JsonObject { ["weights"] = weights, ["format"] = format, ["logits"] = models.File($"{name}.{format}.logits.f32") });
        }
        var config = models.File($"{name}.torch.json");
        File.WriteAllText(config, new JsonObject
        {
            ["model"] = c.Model, ["channels"] = c.Shape.Channels, ["height"] = c.Shape.Height, ["width"] = c.Shape.Width,
            ["classes"] = c.Classes, ["stem"] = c.Stem, ["batch_norm"] = c.BatchNorm, ["dropout"] = c.Dropout,
            ["inputs"] = inputs, ["count"] = p.Count, ["exports"] = exports,
        }.ToJsonString());

        var r = Python.Run("run_torch.py", config);
        Assert.Equal(Formats.Length, r.Lines.Length);
        foreach (var (line, format) in r.Lines.Zip(Formats))
        {
            var report = JsonDocument.Parse(line).RootElement;
            Assert.Equal(format, report.GetProperty("format").GetString());
            Assert.StartsWith("1.13", report.GetProperty("torch").GetString());
            Assert.Equal(0, report.GetProperty("missing").GetArrayLength());
            Assert.Equal(0, report.GetProperty("unexpected").GetArrayLength());
            var logits = MemoryMarshal.Cast<byte, float>(File.ReadAllBytes(models.File($"{name}.{format}.logits.f32"))).ToArray();
            Compare.AssertSameLogits(p.Logits, logits, c.Classes, $"{name} ({format}) in PyTorch", output);
        }
    }
}

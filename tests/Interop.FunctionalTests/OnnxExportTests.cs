using Xunit.Abstractions;
using System.Text.Json;
using Onnx;
using Orchestrator.Worker.Export;
using TorchSharp;
using static TorchSharp.torch;

namespace Orchestrator.Interop.FunctionalTests;

/// <summary>Every built-in model exported to ONNX computes TorchSharp's logits in ONNX Runtime and passes Debian's onnx checker.</summary>
[Collection(InteropCollection.Name)]
public sealed class OnnxExportTests(InteropModels models, ITestOutputHelper output)
{
    private string Export(PreparedModel p)
    {
        using var graph = InferenceGraphBuilder.Build(p.Model, p.Case.Shape, p.Mean, p.Std);
        var proto = OnnxModelWriter.Build(graph, new OnnxMetadata(p.Classes, p.Case.Dataset));
        var path = models.File(p.Case.Name + ".onnx");
        OnnxModelWriter.Save(proto, path);
        return path;
    }

    [Theory]
    [MemberData(nameof(ModelCase.Names), MemberType = typeof(ModelCase))]
    public void The_graph_evaluated_with_TorchSharp_matches_the_models_forward(string name)
    {
        var p = models.Get(name);
        using var graph = InferenceGraphBuilder.Build(p.Model, p.Case.Shape, p.Mean, p.Std);
        using var logits = GraphEvaluator.Run(graph, p.Raw);
        Compare.AssertSameLogits(p.Logits, logits.data<float>().ToArray(), p.Case.Classes, $"{name} graph (TorchSharp)", output);
    }

    [Theory]
    [MemberData(nameof(ModelCase.Names), MemberType = typeof(ModelCase))]
    public void Onnx_Runtime_gives_TorchSharps_logits_on_256_images(string name)
    {
        var p = models.Get(name);
        var path = Export(p);
        var logits = Ort.Run(path, p.Raw);
        Compare.AssertSameLogits(p.Logits, logits, p.Case.Classes, $"{name} in ONNX Runtime", output);
    }

    [Fact]
    public void Debians_onnx_checker_accepts_every_exported_model()
    {
        var paths = ModelCase.All.Keys.Select(n => Export(models.Get(n))).ToArray();
        var r = Python.Run("check_onnx.py", paths);
        var lines = r.Lines.Select(l => JsonDocument.Parse(l).RootElement).ToArray();
        Assert.Equal(paths.Length, lines.Length);
        foreach (var (line, name) in lines.Zip(ModelCase.All.Keys))
        {
            var c = ModelCase.All[name];
            Assert.Equal(8, line.GetProperty("ir_version").GetInt32());
            Assert.Equal(17, line.GetProperty("opset")[0].GetInt32());
            // Dynamic batch, fixed image size; shape inference reaches the declared logits.
            Assert.Equal($"batch,{c.Shape.Channels},{c.Shape.Height},{c.Shape.Width}", Dims(line.GetProperty("input")));
            Assert.Equal($"batch,{c.Classes}", Dims(line.GetProperty("output")));
            var ops = line.GetProperty("ops").EnumerateArray().Select(o => o.GetString()).ToArray();
            Assert.Contains("Sub", ops);
            Assert.Contains("Div", ops);
            Assert.Contains("Conv", ops);
            Assert.Contains("Gemm", ops);
            // Eval mode: BatchNorm folded into the convolutions, no dropout.
            Assert.DoesNotContain("BatchNormalization", ops);
            Assert.DoesNotContain("Dropout", ops);
            var metadata = line.GetProperty("metadata");
            Assert.Equal(c.Classes, JsonSerializer.Deserialize<string[]>(metadata.GetProperty("classes").GetString()!)!.Length);
            Assert.Equal(c.Shape.Channels, JsonSerializer.Deserialize<float[]>(metadata.GetProperty("mean").GetString()!)!.Length);
            Assert.StartsWith("in-graph", metadata.GetProperty("normalization").GetString());
        }
    }

    private static string Dims(JsonElement dims) => string.Join(",", dims.EnumerateArray().Select(d => d.ToString()));

    [Fact]
    public void The_batch_dimension_is_dynamic()
    {
        var p = models.Get("resnet18-cifar");
        using var session = Ort.Open(Export(p));
        var k = p.Case.Classes;
        foreach (var n in new[] { 1, 3, 17 })
        {
            using var slice = p.Raw.narrow(0, 0, n);
            var logits = Ort.Run(session, slice);
            Assert.Equal(n * k, logits.Length);
            Compare.AssertSameLogits(p.Logits[..(n * k)], logits, k, $"batch of {n}", output);
        }
    }

    [Fact]
    public void Class_names_and_normalisation_are_in_the_metadata()
    {
        var p = models.Get("simple-cnn");
        var model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(Export(p)));
        var props = model.MetadataProps.ToDictionary(e => e.Key, e => e.Value);
        Assert.Equal(p.Classes, JsonSerializer.Deserialize<string[]>(props["classes"]));
        Assert.Contains("Ankle boot", props["classes"]);
        Assert.Equal(p.Mean, JsonSerializer.Deserialize<float[]>(props["mean"]));
        Assert.Equal(p.Std, JsonSerializer.Deserialize<float[]>(props["std"]));
        Assert.Equal("simple-cnn", props["model"]);
        Assert.Equal("fashion-mnist", props["dataset"]);
        Assert.StartsWith("none", props["quantization"]);
        // The Sub/Div at the input carry the same statistics.
        var mean = model.Graph.Initializer.Single(t => t.Name == "input_mean");
        Assert.Equal(p.Mean, System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(mean.RawData.Span).ToArray());
        Assert.Equal(["Sub", "Div"], model.Graph.Node.Take(2).Select(n => n.OpType));
    }

    [Fact]
    public void A_graph_without_normalisation_takes_normalised_input()
    {
        var p = models.Get("simple-cnn");
        using var graph = InferenceGraphBuilder.Build(p.Model, p.Case.Shape, null, null);
        var proto = OnnxModelWriter.Build(graph, new OnnxMetadata(p.Classes, p.Case.Dataset));
        Assert.DoesNotContain(proto.Graph.Node, n => n.OpType is "Sub" or "Div");
        Assert.StartsWith("none", proto.MetadataProps.Single(e => e.Key == "normalization").Value);
        var path = models.File("simple-cnn-unnormalised.onnx");
        OnnxModelWriter.Save(proto, path);
        Compare.AssertSameLogits(p.Logits, Ort.Run(path, p.Normalized), p.Case.Classes, "unnormalised graph", output);
    }
}

/// <summary>The exporter refuses what it does not know, in one sentence.</summary>
public sealed class UnknownModelTests
{
    private sealed class Mlp : Worker.Models.ImageClassifier
    {
        private readonly TorchSharp.Modules.Linear _fc = nn.Linear(4, 2);

        public Mlp() : base("mlp") => RegisterComponents();
        public override int NumClasses => 2;
        public override string HeadName => "fc";
        public override void ReplaceHead(int numClasses) => throw new NotSupportedException();
        public override Tensor forward(Tensor input) => _fc.call(input.flatten(1));
    }

    [Fact]
    public void An_architecture_the_exporter_does_not_know_is_refused_with_the_known_ones()
    {
        Worker.Native.TorchRuntime.Initialize();
        using var model = new Mlp();
        var e = Assert.Throws<ArgumentException>(() => InferenceGraphBuilder.Build(model, new Data.ImageShape(1, 2, 2), null, null));
        Assert.Equal("cannot export model 'mlp': ONNX export knows simple-cnn, resnet18, resnet34, resnet50", e.Message);
    }
}

using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using Onnx;
using Orchestrator.Worker.Export;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Orchestrator.Interop.FunctionalTests;

/// <summary>int8 QDQ export: the graph's form, ONNX Runtime runs it (with integer kernels), the checker accepts it, clear errors.</summary>
[Collection(InteropCollection.Name)]
public sealed class QuantizationTests(InteropModels models, ITestOutputHelper output)
{
    private (string Float, string Int8, ModelProto Proto) Export(PreparedModel p)
    {
        using var graph = InferenceGraphBuilder.Build(p.Model, p.Case.Shape, p.Mean, p.Std);
        var metadata = new OnnxMetadata(p.Classes, p.Case.Dataset);
        var fp32 = models.File(p.Case.Name + ".fp32.onnx");
        OnnxModelWriter.Save(OnnxModelWriter.Build(graph, metadata), fp32);
        // Calibrate on the first half of the images, in batches of 64 (as orch export does on training images).
        var batches = Enumerable.Range(0, 2).Select(i => p.Raw.narrow(0, i * 64, 64)).ToList();
        var calibration = Calibrator.Calibrate(graph, batches, "test images");
        foreach (var b in batches) b.Dispose();
        var proto = OnnxModelWriter.Quantize(graph, metadata, calibration);
        var int8 = models.File(p.Case.Name + ".int8.onnx");
        OnnxModelWriter.Save(proto, int8);
        return (fp32, int8, proto);
    }

    [Theory]
    [InlineData("simple-cnn")]
    [InlineData("resnet18-cifar")]
    [InlineData("resnet50-imagenet-gray")]
    public void Every_conv_and_gemm_reads_int8_weights_quantized_per_output_channel(string name)
    {
        var p = models.Get(name);
        var (fp32, int8, proto) = Export(p);
        var g = proto.Graph;
        var initializers = g.Initializer.ToDictionary(t => t.Name);
        var producers = g.Node.SelectMany(n => n.Output.Select(o => (o, n))).ToDictionary(x => x.o, x => x.n);
        var layers = g.Node.Where(n => n.OpType is "Conv" or "Gemm").ToList();
        Assert.NotEmpty(layers);
        foreach (var layer in layers)
        {
            var weightDq = producers[layer.Input[1]];
            Assert.Equal("DequantizeLinear", weightDq.OpType);
            Assert.Equal(0, weightDq.Attribute.Single(a => a.Name == "axis").I);
            var q = initializers[weightDq.Input[0]];
            Assert.Equal((int)TensorProto.Types.DataType.Int8, q.DataType);
            var outChannels = q.Dims[0];
            Assert.Equal([outChannels], initializers[weightDq.Input[1]].Dims);      // one scale per output channel
            Assert.True(initializers[weightDq.Input[2]].RawData.All(b => b == 0));  // symmetric: zero points 0
            var biasDq = producers[layer.Input[2]];
            Assert.Equal((int)TensorProto.Types.DataType.Int32, initializers[biasDq.Input[0]].DataType);
            // The activation input is dequantized uint8.
            var inputDq = producers[layer.Input[0]];
            Assert.Equal("DequantizeLinear", inputDq.OpType);
            Assert.Equal((int)TensorProto.Types.DataType.Uint8, initializers[inputDq.Input[2]].DataType);
        }
        // No float weights left (only scales and the normalisation constants), and no ReLU: the uint8 range starting at 0 clips.
        Assert.DoesNotContain(g.Initializer, t => t.DataType == (int)TensorProto.Types.DataType.Float && t.Dims.Count > 1 && !t.Name.StartsWith("input_", StringComparison.Ordinal));
        Assert.DoesNotContain(g.Node, n => n.OpType == "Relu");
        var ratio = (double)new FileInfo(fp32).Length / new FileInfo(int8).Length;
        output.WriteLine($"{name}: {new FileInfo(fp32).Length:N0} bytes float32, {new FileInfo(int8).Length:N0} bytes int8 ({ratio:F2}x smaller)");
        Assert.True(ratio > 3.5, $"the int8 model is only {ratio:F2}x smaller than the float one");
        Assert.StartsWith("int8 QDQ", proto.MetadataProps.Single(e => e.Key == "quantization").Value);
    }

    [Theory]
    [InlineData("simple-cnn")]
    [InlineData("resnet18-cifar")]
    [InlineData("resnet18-imagenet")]
    [InlineData("resnet50-cifar")]
    public void Onnx_Runtime_runs_the_int8_graph_with_integer_kernels_and_its_logits_stay_near_the_float_ones(string name)
    {
        var p = models.Get(name);
        var (fp32, int8, _) = Export(p);
        var optimized = models.File(name + ".int8.optimized.onnx");
        using (var options = new SessionOptions { IntraOpNumThreads = 2, OptimizedModelFilePath = optimized, GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_EXTENDED })
        using (var session = new InferenceSession(int8, options))
        {
            var logits = Ort.Run(session, p.Raw);
            var reference = Ort.Run(fp32, p.Raw);
            var k = p.Case.Classes;
            var spread = reference.Max() - reference.Min();
            var diff = Compare.MaxAbsDiff(reference, logits);
            var agree = Compare.Top1(reference, k).Zip(Compare.Top1(logits, k)).Count(t => t.First == t.Second) / (double)p.Count;
            output.WriteLine($"{name}: int8 vs float32 logits: max |difference| {diff:G3} (float logits span {spread:G3}), top-1 agreement {agree:P1}");
            // Random weights make near-ties; the accuracy bar is checked on a trained model (Cli.FunctionalTests, bench).
            Assert.True(diff < 0.25 * spread, $"int8 logits differ by {diff} (float logits span {spread})");
            Assert.True(agree >= 0.75, $"int8 and float32 agree on the top class for {agree:P1} of the images");
        }
        var ops = ModelProto.Parser.ParseFrom(File.ReadAllBytes(optimized)).Graph.Node.Select(n => n.OpType).ToHashSet();
        output.WriteLine($"{name}: after ONNX Runtime's optimisation: {string.Join(", ", ops.Order())}");
        Assert.Contains("QLinearConv", ops);
    }

    [Fact]
    public void Debians_onnx_checker_accepts_the_int8_graphs()
    {
        var paths = new[] { "simple-cnn", "resnet18-cifar", "resnet34-imagenet" }.Select(n => Export(models.Get(n)).Int8).ToArray();
        var r = Python.Run("check_onnx.py", paths);
        foreach (var line in r.Lines.Select(l => JsonDocument.Parse(l).RootElement))
        {
            var ops = line.GetProperty("ops").EnumerateArray().Select(o => o.GetString()).ToArray();
            Assert.Contains("QuantizeLinear", ops);
            Assert.Contains("DequantizeLinear", ops);
            Assert.Equal("batch", line.GetProperty("input")[0].GetString());
        }
    }

    [Fact]
    public void An_empty_calibration_set_is_one_clear_error()
    {
        var p = models.Get("simple-cnn");
        using var graph = InferenceGraphBuilder.Build(p.Model, p.Case.Shape, p.Mean, p.Std);
        var e = Assert.Throws<InvalidOperationException>(() => Calibrator.Calibrate(graph, [], "fashion-mnist/train"));
        Assert.Equal("cannot quantize: the calibration set (fashion-mnist/train) is empty; int8 quantization needs at least one calibration image", e.Message);
        using var none = torch.zeros(0, 1, 28, 28);
        Assert.Throws<InvalidOperationException>(() => Calibrator.Calibrate(graph, [none], "fashion-mnist/train"));
    }

    [Fact]
    public void Activation_and_weight_parameters_follow_the_usual_formulas()
    {
        Assert.Equal((6f / 255, (byte)0), OnnxModelWriter.ActivationParameters(new ValueRange(0, 6)));
        var (scale, zero) = OnnxModelWriter.ActivationParameters(new ValueRange(-1, 3));
        Assert.Equal(4f / 255, scale, 6);
        Assert.Equal(64, zero);          // round(1 / (4/255)) = round(63.75)
        Assert.Equal((byte)255, OnnxModelWriter.ActivationParameters(new ValueRange(-2, -1)).ZeroPoint); // range widened to include 0
        using var w = torch.tensor(new float[] { 0.5f, -1f, 0.25f, 0, 0, 0 }, [3, 2]);
        var (q, scales) = OnnxModelWriter.QuantizeWeightsPerChannel(w);
        Assert.Equal([1f / 127, 0.25f / 127, 1f], scales);
        Assert.Equal(new sbyte[] { 64, -127, 127, 0, 0, 0 }, q);
    }
}

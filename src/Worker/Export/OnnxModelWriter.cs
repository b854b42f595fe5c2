using System.Runtime.InteropServices;
using System.Text.Json;
using Google.Protobuf;
using Onnx;
using TorchSharp;
using static TorchSharp.torch;

namespace Orchestrator.Worker.Export;

/// <summary>What the exported model's metadata_props say besides the graph's own facts.</summary>
/// <param name="Classes">Class names, index = logit position.</param>
/// <param name="Dataset">The data set the model was trained on.</param>
/// <param name="Preprocessing">Steps the caller must do before the graph (resize, crop), or null when none.</param>
/// <param name="Extra">More key/value pairs (trial, epochs, accuracy, ...).</param>
public sealed record OnnxMetadata(IReadOnlyList<string> Classes, string Dataset, string? Preprocessing = null,
    IReadOnlyDictionary<string, string>? Extra = null);

/// <summary>
/// Writes an <see cref="InferenceGraph"/> as an ONNX model (opset 17, IR version 8) with the ONNX protobuf
/// schema's generated types: float32 input [batch, C, H, W] with a dynamic batch dimension, the input
/// normalisation as Sub/Div nodes, convolutions with BatchNorm folded in, and float32 logits [batch, classes].
/// With a <see cref="CalibrationResult"/> it writes the int8 QDQ form instead (see <see cref="Quantize"/>).
/// </summary>
public static class OnnxModelWriter
{
    /// <summary>The ONNX operator set the graphs use.</summary>
    public const int Opset = 17;

    /// <summary>The ONNX IR version written (the one that goes with opset 17).</summary>
    public const int IrVersion = 8;

    /// <summary>The metadata keys written.</summary>
    public static class Keys
    {
        public const string Classes = "classes";
        public const string Mean = "mean";
        public const string Std = "std";
        public const string Normalization = "normalization";
        public const string Input = "input";
        public const string Preprocessing = "preprocessing";
        public const string Model = "model";
        public const string Dataset = "dataset";
        public const string Quantization = "quantization";
    }

    /// <summary>The float32 model.</summary>
    public static ModelProto Build(InferenceGraph graph, OnnxMetadata metadata) => BuildCore(graph, metadata, null);

    /// <summary>
    /// The int8 model in QDQ form: every convolution and fully connected layer reads int8 weights quantized
    /// symmetrically per output channel (DequantizeLinear with axis 0) and an int32 bias (scale = input
    /// scale × weight scale); every activation between layers passes a QuantizeLinear/DequantizeLinear pair
    /// (uint8, per tensor, asymmetric, from the calibrated range). A ReLU after a layer is left to the
    /// quantizer: its range starts at 0, so the zero point is 0 and quantizing clips the negatives. Max-pool
    /// and flatten keep their input's scale. The logits stay float32. ONNX Runtime turns these patterns into
    /// integer kernels (QLinearConv, QLinearAdd, ...).
    /// </summary>
    public static ModelProto Quantize(InferenceGraph graph, OnnxMetadata metadata, CalibrationResult calibration)
    {
        ArgumentNullException.ThrowIfNull(calibration);
        return BuildCore(graph, metadata, calibration);
    }

    /// <summary>Writes <paramref name="model"/> to <paramref name="path"/> atomically (temp file, then rename).</summary>
    /// <exception cref="IOException">The file cannot be written (the message names it).</exception>
    public static void Save(ModelProto model, string path)
    {
        ArgumentNullException.ThrowIfNull(model);
        var full = Path.GetFullPath(path);
        var tmp = Path.Combine(Path.GetDirectoryName(full) ?? ".", $".{Path.GetFileName(full)}.{Environment.ProcessId}.tmp");
        try
        {
            using (var file = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
            {
                model.WriteTo(file);
                file.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw new IOException($"cannot write {full}: {e.Message}", e);
        }
    }

    private static ModelProto BuildCore(InferenceGraph graph, OnnxMetadata metadata, CalibrationResult? calibration)
    {
        ArgumentNullException.ThrowIfNull(graph);
        ArgumentNullException.ThrowIfNull(metadata);
        if (metadata.Classes.Count != graph.NumClasses)
            throw new ArgumentException($"the model has {graph.NumClasses} outputs but {metadata.Classes.Count} class names");
        var g = new GraphProto { Name = graph.Model };
        var s = graph.Input;
        g.Input.Add(TensorValue(InferenceGraph.InputName, TensorProto.Types.DataType.Float, "batch", s.Channels, s.Height, s.Width));
        g.Output.Add(TensorValue(InferenceGraph.OutputName, TensorProto.Types.DataType.Float, "batch", graph.NumClasses));

        var e = new Emitter(g, calibration);
        if (graph.Mean is { } mean && graph.Std is { } std)
        {
            g.Initializer.Add(FloatTensor("input_mean", mean, [1, s.Channels, 1, 1]));
            g.Initializer.Add(FloatTensor("input_std", std, [1, s.Channels, 1, 1]));
            g.Node.Add(Node("Sub", "input_sub", [InferenceGraph.InputName, "input_mean"], ["input_centered"]));
            g.Node.Add(Node("Div", "input_div", ["input_centered", "input_std"], [InferenceGraph.NormalizedName]));
        }
        e.QuantizeValue(graph.FirstValue);
        foreach (var node in graph.Nodes) e.Emit(node);

        var model = new ModelProto
        {
            IrVersion = IrVersion,
            ProducerName = "orch",
            ProducerVersion = typeof(OnnxModelWriter).Assembly.GetName().Version?.ToString() ?? "0",
            Domain = "orchestrator",
            ModelVersion = 1,
            DocString = $"{graph.Model} image classifier exported by orch ({(calibration is null ? "float32" : "int8 QDQ")}): " +
                        $"input float32 [batch, {s.Channels}, {s.Height}, {s.Width}], " +
                        (graph.NormalizesInput ? "pixel values in [0, 1] (normalised inside the graph)" : "already normalised images") +
                        $"; output logits [batch, {graph.NumClasses}]. Class names and normalisation in metadata_props.",
            Graph = g,
        };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = Opset });
        AddMetadata(model, graph, metadata, calibration);
        return model;
    }

    private static void AddMetadata(ModelProto model, InferenceGraph graph, OnnxMetadata metadata, CalibrationResult? calibration)
    {
        var s = graph.Input;
        var props = new List<(string, string)>
        {
            (Keys.Classes, JsonSerializer.Serialize(metadata.Classes)),
            (Keys.Input, $"float32 NCHW [batch, {s.Channels}, {s.Height}, {s.Width}], " +
                         (graph.NormalizesInput ? "pixel values scaled to [0, 1] (uint8 / 255)" : "normalised as the model was trained") +
                         (s.Channels == 3 ? ", RGB" : s.Channels == 1 ? ", grayscale" : "")),
            (Keys.Normalization, graph.NormalizesInput
                ? "in-graph: (input - mean) / std per channel (Sub, Div at the input)"
                : "none: the graph takes normalised input; the training statistics are in mean and std"),
            (Keys.Model, graph.Model),
            (Keys.Dataset, metadata.Dataset),
            (Keys.Preprocessing, metadata.Preprocessing ?? "none"),
            (Keys.Quantization, calibration is null
                ? "none (float32)"
                : $"int8 QDQ, static: weights int8 symmetric per output channel, biases int32, activations uint8 asymmetric per tensor, " +
                  $"min/max calibrated on {calibration.Images} images of {calibration.Source}"),
        };
        if (graph.Mean is { } mean) props.Add((Keys.Mean, JsonSerializer.Serialize(mean)));
        if (graph.Std is { } std) props.Add((Keys.Std, JsonSerializer.Serialize(std)));
        foreach (var (k, v) in metadata.Extra ?? new Dictionary<string, string>())
            if (!props.Any(p => p.Item1 == k)) props.Add((k, v));
        foreach (var (k, v) in props) model.MetadataProps.Add(new StringStringEntryProto { Key = k, Value = v });
    }

    /// <summary>Emits the nodes of one layer, plain or quantized.</summary>
    private sealed class Emitter(GraphProto g, CalibrationResult? calibration)
    {
        // Per quantized value: its scale and zero point, and the name of its dequantized copy.
        private readonly Dictionary<string, (float Scale, byte ZeroPoint, string Dequantized)> _quantized = new(StringComparer.Ordinal);

        private bool Quantizing => calibration is not null;

        /// <summary>The name a consumer reads: the dequantized copy when the value is quantized.</summary>
        private string Read(string value) => _quantized.TryGetValue(value, out var q) ? q.Dequantized : value;

        public void Emit(GraphNode node)
        {
            switch (node)
            {
                case ConvNode n:
                {
                    var inputs = Quantizing ? QuantizedWeights(n.Name, n.Input, n.Weight, n.Bias) : Weights(n.Name, n.Weight, n.Bias);
                    var conv = Node("Conv", n.Name, [Read(n.Input), inputs.W, inputs.B], [Quantizing || !n.Relu ? n.Output : n.Output + "_pre"]);
                    conv.Attribute.Add(Ints("kernel_shape", n.KernelShape));
                    conv.Attribute.Add(Ints("strides", n.Stride));
                    conv.Attribute.Add(Ints("pads", [n.Padding[0], n.Padding[1], n.Padding[0], n.Padding[1]]));
                    conv.Attribute.Add(Ints("dilations", n.Dilation));
                    conv.Attribute.Add(Int("group", n.Groups));
                    g.Node.Add(conv);
                    Finish(n.Name, n.Output, n.Relu);
                    break;
                }
                case GemmNode n:
                {
                    var inputs = Quantizing ? QuantizedWeights(n.Name, n.Input, n.Weight, n.Bias) : Weights(n.Name, n.Weight, n.Bias);
                    var final = n.Output == InferenceGraph.OutputName;
                    var gemm = Node("Gemm", n.Name, [Read(n.Input), inputs.W, inputs.B], [(Quantizing && !final) || !n.Relu ? n.Output : n.Output + "_pre"]);
                    gemm.Attribute.Add(Int("transB", 1));
                    g.Node.Add(gemm);
                    if (final)
                    {
                        if (n.Relu) g.Node.Add(Node("Relu", n.Name + ".relu", [n.Output + "_pre"], [n.Output]));
                    }
                    else
                    {
                        Finish(n.Name, n.Output, n.Relu);
                    }
                    break;
                }
                case AddNode n:
                    g.Node.Add(Node("Add", n.Name, [Read(n.A), Read(n.B)], [Quantizing || !n.Relu ? n.Output : n.Output + "_pre"]));
                    Finish(n.Name, n.Output, n.Relu);
                    break;
                case MaxPoolNode n:
                {
                    var pool = Node("MaxPool", n.Name, [Read(n.Input)], [n.Output]);
                    pool.Attribute.Add(Ints("kernel_shape", n.Kernel));
                    pool.Attribute.Add(Ints("strides", n.Stride));
                    pool.Attribute.Add(Ints("pads", [n.Padding[0], n.Padding[1], n.Padding[0], n.Padding[1]]));
                    g.Node.Add(pool);
                    QuantizeLike(n.Output, n.Input);
                    break;
                }
                case GlobalAveragePoolNode n:
                    g.Node.Add(Node("GlobalAveragePool", n.Name, [Read(n.Input)], [n.Output]));
                    QuantizeValue(n.Output);
                    break;
                case FlattenNode n:
                {
                    var flatten = Node("Flatten", n.Name, [Read(n.Input)], [n.Output]);
                    flatten.Attribute.Add(Int("axis", 1));
                    g.Node.Add(flatten);
                    QuantizeLike(n.Output, n.Input);
                    break;
                }
                default:
                    throw new InvalidOperationException($"no ONNX form for {node.GetType().Name}");
            }
        }

        /// <summary>After a layer: ReLU (float), or quantization of the output (which does the ReLU's clipping).</summary>
        private void Finish(string name, string output, bool relu)
        {
            if (Quantizing)
            {
                QuantizeValue(output, relu);
            }
            else if (relu)
            {
                g.Node.Add(Node("Relu", name + ".relu", [output + "_pre"], [output]));
            }
        }

        /// <summary>Q/DQ pair on a value, from its calibrated range (no-op for a float model).</summary>
        public void QuantizeValue(string value, bool afterRelu = false)
        {
            if (calibration is null) return;
            if (!calibration.Ranges.TryGetValue(value, out var range))
                throw new InvalidOperationException($"calibration has no range for {value}");
            var (scale, zeroPoint) = ActivationParameters(range);
            if (afterRelu && zeroPoint != 0)
                throw new InvalidOperationException($"{value} follows a ReLU but its calibrated minimum is {range.Min}");
            AddQdq(value, scale, zeroPoint);
        }

        private void QuantizeLike(string value, string like)
        {
            if (calibration is null) return;
            if (!_quantized.TryGetValue(like, out var q)) throw new InvalidOperationException($"{like} is not quantized");
            AddQdq(value, q.Scale, q.ZeroPoint);
        }

        private void AddQdq(string value, float scale, byte zeroPoint)
        {
            g.Initializer.Add(FloatTensor(value + ".scale", [scale], []));
            g.Initializer.Add(new TensorProto { Name = value + ".zero_point", DataType = (int)TensorProto.Types.DataType.Uint8, RawData = ByteString.CopyFrom(zeroPoint) });
            g.Node.Add(Node("QuantizeLinear", value + ".quantize", [value, value + ".scale", value + ".zero_point"], [value + ".quantized"]));
            g.Node.Add(Node("DequantizeLinear", value + ".dequantize", [value + ".quantized", value + ".scale", value + ".zero_point"], [value + ".dequantized"]));
            _quantized[value] = (scale, zeroPoint, value + ".dequantized");
        }

        private (string W, string B) Weights(string name, Tensor weight, Tensor bias)
        {
            g.Initializer.Add(FloatTensor(name + ".weight", weight));
            g.Initializer.Add(FloatTensor(name + ".bias", bias));
            return (name + ".weight", name + ".bias");
        }

        private (string W, string B) QuantizedWeights(string name, string input, Tensor weight, Tensor bias)
        {
            if (!_quantized.TryGetValue(input, out var x)) throw new InvalidOperationException($"{input} (the input of {name}) is not quantized");
            var (q, scales) = QuantizeWeightsPerChannel(weight);
            var channels = scales.Length;
            var wName = name + ".weight";
            g.Initializer.Add(new TensorProto { Name = wName + "_quantized", DataType = (int)TensorProto.Types.DataType.Int8, RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(q.AsSpan())) });
            g.Initializer[^1].Dims.AddRange(weight.shape);
            g.Initializer.Add(FloatTensor(wName + "_scale", scales, [channels]));
            g.Initializer.Add(new TensorProto { Name = wName + "_zero_point", DataType = (int)TensorProto.Types.DataType.Int8, RawData = ByteString.CopyFrom(new byte[channels]) });
            g.Initializer[^1].Dims.Add(channels);
            var dqw = Node("DequantizeLinear", wName + ".dequantize", [wName + "_quantized", wName + "_scale", wName + "_zero_point"], [wName + "_dequantized"]);
            dqw.Attribute.Add(Int("axis", 0));
            g.Node.Add(dqw);

            // Bias: int32 with scale input_scale × weight_scale[c] (what integer kernels add to the accumulator).
            var b = bias.data<float>().ToArray();
            var bScales = new float[channels];
            var bq = new int[channels];
            for (var c = 0; c < channels; c++)
            {
                bScales[c] = x.Scale * scales[c];
                bq[c] = (int)Math.Clamp(Math.Round(b[c] / (double)bScales[c], MidpointRounding.ToEven), int.MinValue, int.MaxValue);
            }
            var bName = name + ".bias";
            g.Initializer.Add(new TensorProto { Name = bName + "_quantized", DataType = (int)TensorProto.Types.DataType.Int32, RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(bq.AsSpan())) });
            g.Initializer[^1].Dims.Add(channels);
            g.Initializer.Add(FloatTensor(bName + "_scale", bScales, [channels]));
            g.Initializer.Add(new TensorProto { Name = bName + "_zero_point", DataType = (int)TensorProto.Types.DataType.Int32, RawData = ByteString.CopyFrom(new byte[4 * channels]) });
            g.Initializer[^1].Dims.Add(channels);
            var dqb = Node("DequantizeLinear", bName + ".dequantize", [bName + "_quantized", bName + "_scale", bName + "_zero_point"], [bName + "_dequantized"]);
            dqb.Attribute.Add(Int("axis", 0));
            g.Node.Add(dqb);
            return (wName + "_dequantized", bName + "_dequantized");
        }
    }

    /// <summary>
    /// uint8 asymmetric parameters for a calibrated range: the range is widened to include 0 (so 0 is exact),
    /// scale = (max − min) / 255, zero point = round(−min / scale).
    /// </summary>
    public static (float Scale, byte ZeroPoint) ActivationParameters(ValueRange range)
    {
        var min = Math.Min(0.0, range.Min);
        var max = Math.Max(0.0, range.Max);
        if (max - min < 1e-12) return (1f, 0);
        var scale = (float)((max - min) / 255.0);
        var zero = Math.Clamp(Math.Round(-min / scale, MidpointRounding.ToEven), 0, 255);
        return (scale, (byte)zero);
    }

    /// <summary>
    /// int8 symmetric per-output-channel quantization of a weight [out, ...]: scale[c] = max|w_c| / 127,
    /// q = round(w / scale) in [−127, 127] (an all-zero channel gets scale 1).
    /// </summary>
    public static (sbyte[] Quantized, float[] Scales) QuantizeWeightsPerChannel(Tensor weight)
    {
        ArgumentNullException.ThrowIfNull(weight);
        var channels = (int)weight.shape[0];
        var w = weight.contiguous().data<float>().ToArray();
        var per = w.Length / channels;
        var q = new sbyte[w.Length];
        var scales = new float[channels];
        for (var c = 0; c < channels; c++)
        {
            var span = w.AsSpan(c * per, per);
            var maxAbs = 0f;
            foreach (var v in span) maxAbs = Math.Max(maxAbs, Math.Abs(v));
            var scale = maxAbs > 0 ? maxAbs / 127f : 1f;
            scales[c] = scale;
            for (var i = 0; i < per; i++)
                q[c * per + i] = (sbyte)Math.Clamp(Math.Round(span[i] / scale, MidpointRounding.ToEven), -127, 127);
        }
        return (q, scales);
    }

    private static NodeProto Node(string op, string name, string[] inputs, string[] outputs)
    {
        var node = new NodeProto { OpType = op, Name = name };
        node.Input.AddRange(inputs);
        node.Output.AddRange(outputs);
        return node;
    }

    private static AttributeProto Ints(string name, long[] values)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        a.Ints.AddRange(values);
        return a;
    }

    private static AttributeProto Int(string name, long value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    private static TensorProto FloatTensor(string name, Tensor values)
    {
        using var c = values.contiguous();
        return FloatTensor(name, c.data<float>().ToArray(), values.shape);
    }

    private static TensorProto FloatTensor(string name, float[] values, long[] dims)
    {
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float, RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values.AsSpan())) };
        t.Dims.AddRange(dims);
        return t;
    }

    private static ValueInfoProto TensorValue(string name, TensorProto.Types.DataType type, string batch, params int[] dims)
    {
        var shape = new TensorShapeProto();
        shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimParam = batch });
        foreach (var d in dims) shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = d });
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } },
        };
    }
}

using Orchestrator.Data;
using Orchestrator.Worker.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Orchestrator.Worker.Export;

/// <summary>
/// Turns a built-in model (<see cref="SimpleCnn"/>, <see cref="ResNet"/> of any depth, either stem, any
/// head) into its eval-mode <see cref="InferenceGraph"/>: BatchNorm folded into the convolution before it
/// (with the running statistics), dropout left out. Layer settings (kernel, stride, padding) are read from
/// the modules themselves, so the graph is what <c>forward</c> computes in eval mode.
/// </summary>
public static class InferenceGraphBuilder
{
    /// <summary>
    /// Builds the graph. <paramref name="mean"/> and <paramref name="std"/> (one value per input channel, or
    /// one value for all) fold the input normalisation into the graph; null leaves it out.
    /// </summary>
    /// <exception cref="ArgumentException">A model this exporter does not know.</exception>
    public static InferenceGraph Build(ImageClassifier model, ImageShape input, float[]? mean, float[]? std)
    {
        ArgumentNullException.ThrowIfNull(model);
        if ((mean is null) != (std is null)) throw new ArgumentException("give both mean and std, or neither");
        var channelMean = mean is null ? null : PerChannel(mean, input.Channels, "mean");
        var channelStd = std is null ? null : PerChannel(std, input.Channels, "std");
        if (channelStd is not null && channelStd.Any(s => !(s > 0)))
            throw new ArgumentException($"every std of the input normalisation must be positive (got {string.Join(", ", channelStd)})");

        using var noGrad = torch.no_grad();
        var modules = model.named_modules().ToDictionary(m => m.name, m => m.module, StringComparer.Ordinal);
        var nodes = new List<GraphNode>();
        var b = new Builder(modules, nodes);
        var first = channelMean is null ? InferenceGraph.InputName : InferenceGraph.NormalizedName;
        try
        {
            switch (model)
            {
                case SimpleCnn:
                    BuildSimpleCnn(b, first);
                    break;
                case ResNet:
                    BuildResNet(b, first);
                    break;
                default:
                    throw new ArgumentException($"cannot export model '{model.GetName()}': ONNX export knows {string.Join(", ", ModelRegistry.Names)}");
            }
        }
        catch
        {
            using var partial = new InferenceGraph(model.GetName(), input, model.NumClasses, channelMean, channelStd, nodes);
            throw;
        }
        return new InferenceGraph(model.GetName(), input, model.NumClasses, channelMean, channelStd, nodes);
    }

    /// <summary>Normalisation statistics for <paramref name="channels"/> channels: as given, or one value repeated.</summary>
    /// <remarks>A list of another length is averaged and repeated, as the training pipeline does.</remarks>
    public static float[] PerChannel(float[] values, int channels, string what)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (values.Length == 0) throw new ArgumentException($"the input normalisation has no {what} values");
        return values.Length == channels ? [.. values] : Enumerable.Repeat(values.Average(), channels).ToArray();
    }

    private static void BuildSimpleCnn(Builder b, string input)
    {
        // conv → [bn] → relu → 2×2 max-pool, twice; flatten; fc1 → relu → [dropout] → fc2.
        var x = b.Conv("conv1", "bn1", input, relu: true);
        x = b.MaxPool("pool", x, "pool1");
        x = b.Conv("conv2", "bn2", x, relu: true);
        x = b.MaxPool("pool", x, "pool2");
        x = b.Flatten("flatten", x);
        x = b.Gemm("fc1", x, relu: true);
        b.Gemm("fc2", x, relu: false, output: InferenceGraph.OutputName);
    }

    private static void BuildResNet(Builder b, string input)
    {
        var x = b.Conv("conv1", "bn1", input, relu: true);
        if (b.Has("maxpool")) x = b.MaxPool("maxpool", x, "maxpool");
        for (var stage = 1; stage <= 4; stage++)
        {
            for (var block = 0; b.Has($"layer{stage}.{block}"); block++)
            {
                var p = $"layer{stage}.{block}";
                var identity = x;
                if (b.Has(p + ".conv3"))
                {
                    // Bottleneck: 1×1 reduce, 3×3 (the stride), 1×1 expand.
                    x = b.Conv(p + ".conv1", p + ".bn1", x, relu: true);
                    x = b.Conv(p + ".conv2", p + ".bn2", x, relu: true);
                    x = b.Conv(p + ".conv3", p + ".bn3", x, relu: false);
                }
                else
                {
                    x = b.Conv(p + ".conv1", p + ".bn1", x, relu: true);
                    x = b.Conv(p + ".conv2", p + ".bn2", x, relu: false);
                }
                if (b.Has(p + ".downsample")) identity = b.Conv(p + ".downsample.0", p + ".downsample.1", identity, relu: false);
                x = b.Add(p + ".add", x, identity, relu: true);
            }
        }
        x = b.GlobalAveragePool("avgpool", x);
        x = b.Flatten("flatten", x);
        b.Gemm("fc", x, relu: false, output: InferenceGraph.OutputName);
    }

    private sealed class Builder(Dictionary<string, nn.Module> modules, List<GraphNode> nodes)
    {
        public bool Has(string name) => modules.ContainsKey(name);

        private T Get<T>(string name) where T : nn.Module =>
            modules.TryGetValue(name, out var m) && m is T t
                ? t
                : throw new ArgumentException($"cannot export: the model has no {typeof(T).Name} '{name}'");

        public string Conv(string convName, string bnName, string input, bool relu)
        {
            var conv = Get<Conv2d>(convName);
            if (conv.transposed || conv.padding_type is not null || conv.padding_mode != PaddingModes.Zeros)
                throw new ArgumentException($"cannot export {convName}: only zero-padded (explicit padding), non-transposed convolutions are supported");
            using var w = conv.weight!.detach().cpu().to_type(ScalarType.Float64);
            var outChannels = w.shape[0];
            using var convBias = conv.bias is { } cb ? cb.detach().cpu().to_type(ScalarType.Float64) : torch.zeros(outChannels, ScalarType.Float64);
            Tensor weight, bias;
            if (modules.TryGetValue(bnName, out var m) && m is BatchNorm2d bn)
            {
                // Eval-mode BatchNorm: y = (x − μ)·γ/√(σ² + ε) + β, folded into the conv (in float64).
                using var mean = bn.running_mean!.detach().cpu().to_type(ScalarType.Float64);
                using var variance = bn.running_var!.detach().cpu().to_type(ScalarType.Float64);
                using var gamma = bn.weight is { } g ? g.detach().cpu().to_type(ScalarType.Float64) : torch.ones(outChannels, ScalarType.Float64);
                using var beta = bn.bias is { } bb ? bb.detach().cpu().to_type(ScalarType.Float64) : torch.zeros(outChannels, ScalarType.Float64);
                using var denominator = (variance + bn.eps).sqrt_();
                using var scale = gamma / denominator;
                using var scale4 = scale.view(outChannels, 1, 1, 1);
                using var w64 = w * scale4;
                weight = w64.to_type(ScalarType.Float32).contiguous();
                using var shifted = convBias - mean;
                using var b64 = shifted.mul_(scale).add_(beta);
                bias = b64.to_type(ScalarType.Float32).contiguous();
            }
            else
            {
                weight = w.to_type(ScalarType.Float32).contiguous();
                bias = convBias.to_type(ScalarType.Float32).contiguous();
            }
            var padding = conv.padding ?? [0, 0];
            if (padding.Length == 1) padding = [padding[0], padding[0]];
            var output = convName + (relu ? ".relu" : ".out");
            nodes.Add(new ConvNode(convName, input, output, weight, bias, Pair(conv.stride), padding, Pair(conv.dilation), conv.groups, relu));
            return output;
        }

        public string Gemm(string name, string input, bool relu, string? output = null)
        {
            var linear = Get<Linear>(name);
            var weight = linear.weight!.detach().cpu().to_type(ScalarType.Float32).contiguous();
            var bias = linear.bias is { } lb ? lb.detach().cpu().to_type(ScalarType.Float32).contiguous() : torch.zeros(linear.out_features);
            output ??= name + (relu ? ".relu" : ".out");
            nodes.Add(new GemmNode(name, input, output, weight, bias, relu));
            return output;
        }

        public string MaxPool(string moduleName, string input, string nodeName)
        {
            var pool = Get<MaxPool2d>(moduleName);
            if (pool.ceil_mode || pool.dilation is { } d && d.Any(v => v != 1))
                throw new ArgumentException($"cannot export {moduleName}: only floor-mode, undilated max-pooling is supported");
            var kernel = Pair(pool.kernel_size);
            var stride = pool.stride is { Length: > 0 } s ? Pair(s) : kernel;
            var output = nodeName + ".out";
            nodes.Add(new MaxPoolNode(nodeName, input, output, kernel, stride, Pair(pool.padding ?? [0])));
            return output;
        }

        public string Add(string name, string a, string bValue, bool relu)
        {
            var output = name + (relu ? ".relu" : ".out");
            nodes.Add(new AddNode(name, a, bValue, output, relu));
            return output;
        }

        public string GlobalAveragePool(string name, string input)
        {
            var pool = Get<AdaptiveAvgPool2d>(name);
            if (pool.output_size.Any(v => v != 1)) throw new ArgumentException($"cannot export {name}: only a pool to 1×1 is supported");
            var output = name + ".out";
            nodes.Add(new GlobalAveragePoolNode(name, input, output));
            return output;
        }

        public string Flatten(string name, string input)
        {
            var output = name + ".out";
            nodes.Add(new FlattenNode(name, input, output));
            return output;
        }

        private static long[] Pair(long[]? values) => values switch
        {
            null or { Length: 0 } => [1, 1],
            { Length: 1 } => [values[0], values[0]],
            _ => [values[0], values[1]],
        };
    }
}

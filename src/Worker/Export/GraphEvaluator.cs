using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Orchestrator.Worker.Export;

/// <summary>
/// Runs an <see cref="InferenceGraph"/> with TorchSharp on the CPU, value by value, as ONNX Runtime runs
/// the exported graph. Used to calibrate quantization (every intermediate value is shown to an observer)
/// and to check that the graph computes what the model's eval-mode forward does.
/// </summary>
public static class GraphEvaluator
{
    /// <summary>
    /// The logits for <paramref name="images"/> ([N, C, H, W] float32, the graph's input: raw [0, 1] pixels
    /// when the graph normalises, normalised images otherwise). <paramref name="observe"/> sees each value
    /// by name (the input, the normalised input, every layer's output) while it is alive; it must not keep it.
    /// </summary>
    public static Tensor Run(InferenceGraph graph, Tensor images, Action<string, Tensor>? observe = null)
    {
        ArgumentNullException.ThrowIfNull(graph);
        ArgumentNullException.ThrowIfNull(images);
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var x = images.cpu().to_type(ScalarType.Float32);
        var values = new Dictionary<string, Tensor>(StringComparer.Ordinal) { [InferenceGraph.InputName] = x };
        observe?.Invoke(InferenceGraph.InputName, x);
        if (graph.Mean is { } mean && graph.Std is { } std)
        {
            var c = graph.Input.Channels;
            var normalized = (x - torch.tensor(mean, [1, c, 1, 1])) / torch.tensor(std, [1, c, 1, 1]);
            values[InferenceGraph.NormalizedName] = normalized;
            observe?.Invoke(InferenceGraph.NormalizedName, normalized);
        }
        Tensor last = x;
        foreach (var node in graph.Nodes)
        {
            var y = node switch
            {
                ConvNode n => Relu(F.conv2d(values[n.Input], n.Weight, n.Bias, n.Stride, n.Padding, n.Dilation, n.Groups), n.Relu),
                GemmNode n => Relu(F.linear(values[n.Input], n.Weight, n.Bias), n.Relu),
                MaxPoolNode n => F.max_pool2d(values[n.Input], n.Kernel, n.Stride, n.Padding),
                AddNode n => Relu(values[n.A] + values[n.B], n.Relu),
                GlobalAveragePoolNode n => values[n.Input].mean([2, 3], keepdim: true),
                FlattenNode n => values[n.Input].flatten(1),
                _ => throw new InvalidOperationException($"no evaluator for {node.GetType().Name}"),
            };
            values[node.Output] = y;
            observe?.Invoke(node.Output, y);
            last = y;
        }
        return last.MoveToOuterDisposeScope();
    }

    private static Tensor Relu(Tensor x, bool relu) => relu ? x.relu_() : x;
}

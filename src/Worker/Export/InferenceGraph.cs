using Orchestrator.Data;
using static TorchSharp.torch;

namespace Orchestrator.Worker.Export;

/// <summary>
/// An eval-mode image classifier as a small data-flow graph: the input normalisation, then convolutions
/// (BatchNorm folded in), pools, residual additions and fully connected layers, in topological order.
/// <see cref="OnnxModelWriter"/> writes it as ONNX (plain or quantized); <see cref="GraphEvaluator"/>
/// runs it with TorchSharp (quantization calibration, and a check that it computes what the model does).
/// Built by <see cref="InferenceGraphBuilder"/>; owns its weight tensors (CPU, float32).
/// </summary>
public sealed class InferenceGraph : IDisposable
{
    /// <summary>Name of the graph input: float32 [batch, C, H, W].</summary>
    public const string InputName = "input";

    /// <summary>Name of the graph output: float32 [batch, classes], the logits.</summary>
    public const string OutputName = "logits";

    /// <summary>Name of the normalised input (the value after the Sub/Div), when normalisation is folded in.</summary>
    public const string NormalizedName = "input_normalized";

    internal InferenceGraph(string model, ImageShape input, int numClasses, float[]? mean, float[]? std, IReadOnlyList<GraphNode> nodes)
    {
        Model = model;
        Input = input;
        NumClasses = numClasses;
        Mean = mean;
        Std = std;
        Nodes = nodes;
    }

    /// <summary>The model's name (simple-cnn, resnet18, ...).</summary>
    public string Model { get; }

    /// <summary>Channels, height and width of one input image.</summary>
    public ImageShape Input { get; }

    /// <summary>Width of the logits.</summary>
    public int NumClasses { get; }

    /// <summary>Per-channel mean subtracted in the graph (null: the graph takes already-normalised input).</summary>
    public float[]? Mean { get; }

    /// <summary>Per-channel standard deviation divided by in the graph (null with <see cref="Mean"/>).</summary>
    public float[]? Std { get; }

    /// <summary>Whether the graph normalises its input itself.</summary>
    public bool NormalizesInput => Mean is not null;

    /// <summary>The layers in topological order; the last one writes <see cref="OutputName"/>.</summary>
    public IReadOnlyList<GraphNode> Nodes { get; }

    /// <summary>The value the first layer reads: the normalised input, or the raw input.</summary>
    public string FirstValue => NormalizesInput ? NormalizedName : InputName;

    /// <summary>Number of weights (folded), for messages.</summary>
    public long ParameterCount => Nodes.Sum(n => n switch
    {
        ConvNode c => c.Weight.numel() + c.Bias.numel(),
        GemmNode g => g.Weight.numel() + g.Bias.numel(),
        _ => 0,
    });

    public void Dispose()
    {
        foreach (var node in Nodes)
        {
            switch (node)
            {
                case ConvNode c:
                    c.Weight.Dispose();
                    c.Bias.Dispose();
                    break;
                case GemmNode g:
                    g.Weight.Dispose();
                    g.Bias.Dispose();
                    break;
            }
        }
    }
}

/// <summary>One layer: reads <see cref="Inputs"/> (value names), writes <see cref="Output"/>.</summary>
/// <param name="Name">Unique name, from the module path (e.g. layer1.0.conv1).</param>
public abstract record GraphNode(string Name, IReadOnlyList<string> Inputs, string Output);

/// <summary>
/// 2-D convolution with a bias (the BatchNorm that followed it folded in: w·γ/√(σ²+ε), (b−μ)·γ/√(σ²+ε)+β),
/// optionally followed by ReLU.
/// </summary>
/// <param name="Weight">[out, in/groups, kH, kW].</param>
/// <param name="Bias">[out].</param>
/// <param name="Padding">[top, left] (symmetric: bottom = top, right = left).</param>
public sealed record ConvNode(string Name, string Input, string Output, Tensor Weight, Tensor Bias,
    long[] Stride, long[] Padding, long[] Dilation, long Groups, bool Relu) : GraphNode(Name, [Input], Output)
{
    /// <summary>[kH, kW].</summary>
    public long[] KernelShape => [Weight.shape[2], Weight.shape[3]];
}

/// <summary>Fully connected layer y = x·Wᵀ + b, optionally followed by ReLU.</summary>
/// <param name="Weight">[out, in].</param>
/// <param name="Bias">[out].</param>
public sealed record GemmNode(string Name, string Input, string Output, Tensor Weight, Tensor Bias, bool Relu)
    : GraphNode(Name, [Input], Output);

/// <summary>2-D max pooling (floor mode).</summary>
public sealed record MaxPoolNode(string Name, string Input, string Output, long[] Kernel, long[] Stride, long[] Padding)
    : GraphNode(Name, [Input], Output);

/// <summary>Element-wise sum of two values (a residual connection), optionally followed by ReLU.</summary>
public sealed record AddNode(string Name, string A, string B, string Output, bool Relu) : GraphNode(Name, [A, B], Output);

/// <summary>Mean over the spatial dimensions: [N, C, H, W] → [N, C, 1, 1].</summary>
public sealed record GlobalAveragePoolNode(string Name, string Input, string Output) : GraphNode(Name, [Input], Output);

/// <summary>[N, C, H, W] → [N, C·H·W] (row-major, as torch's flatten(1)).</summary>
public sealed record FlattenNode(string Name, string Input, string Output) : GraphNode(Name, [Input], Output);

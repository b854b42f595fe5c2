using Orchestrator.Data;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Orchestrator.Worker.Models;

/// <summary>
/// The classic tutorial network: two 3×3 conv blocks (conv [+BatchNorm] + ReLU + 2×2 max-pool, 32 then 64
/// channels) and two fully connected layers (512 hidden units, optional dropout). About 2.1 M parameters
/// on 3×32×32 inputs. PyTorch's default initialisation (TorchSharp's constructors do the same).
/// </summary>
public sealed class SimpleCnn : ImageClassifier
{
    [ComponentName(Name = "conv1")] private readonly Conv2d _conv1;
    [ComponentName(Name = "bn1")] private readonly BatchNorm2d? _bn1;
    [ComponentName(Name = "conv2")] private readonly Conv2d _conv2;
    [ComponentName(Name = "bn2")] private readonly BatchNorm2d? _bn2;
    [ComponentName(Name = "pool")] private readonly MaxPool2d _pool;
    [ComponentName(Name = "fc1")] private readonly Linear _fc1;
    [ComponentName(Name = "dropout")] private readonly Dropout? _dropout;
    // Not readonly: ReplaceHead swaps it.
    [ComponentName(Name = "fc2")] private Linear _fc2;

    /// <summary>Builds the network for <paramref name="input"/> images and <paramref name="numClasses"/> classes.</summary>
    public SimpleCnn(ImageShape input, int numClasses, double dropout = 0, bool batchNorm = true) : base("simple-cnn")
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(input.Channels, 1);
        // Two 2×2 pools: anything smaller than 4 px would flatten to nothing.
        ArgumentOutOfRangeException.ThrowIfLessThan(input.Height, 4);
        ArgumentOutOfRangeException.ThrowIfLessThan(input.Width, 4);
        ArgumentOutOfRangeException.ThrowIfLessThan(numClasses, 1);
        if (dropout is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(dropout), dropout, "must be in [0, 1)");

        // A conv bias directly before BatchNorm is cancelled by the mean subtraction: leave it out then.
        _conv1 = nn.Conv2d(input.Channels, 32, 3, padding: 1, bias: !batchNorm);
        _bn1 = batchNorm ? nn.BatchNorm2d(32) : null;
        _conv2 = nn.Conv2d(32, 64, 3, padding: 1, bias: !batchNorm);
        _bn2 = batchNorm ? nn.BatchNorm2d(64) : null;
        _pool = nn.MaxPool2d(2);
        // Max-pool floors odd sizes, so the flattened width is computed the same way.
        var flat = 64 * (input.Height / 2 / 2) * (input.Width / 2 / 2);
        _fc1 = nn.Linear(flat, 512);
        _dropout = dropout > 0 ? nn.Dropout(dropout) : null;
        _fc2 = nn.Linear(512, numClasses);
        RegisterComponents();
    }

    /// <inheritdoc />
    public override int NumClasses => (int)_fc2.weight!.shape[0];

    /// <inheritdoc />
    public override string HeadName => "fc2";

    /// <summary>Whether the conv blocks use BatchNorm.</summary>
    public bool HasBatchNorm => _bn1 is not null;

    /// <inheritdoc />
    public override void ReplaceHead(int numClasses)
    {
        var old = _fc2;
        _fc2 = (Linear)NewHeadLike(old, numClasses);
        ReplaceSubmodule("fc2", _fc2);
        old.Dispose();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor input)
    {
        using var x1 = Block(input, _conv1, _bn1);
        using var x2 = Block(x1, _conv2, _bn2);
        using var flat = x2.flatten(1);
        using var hidden = _fc1.call(flat).relu_();
        if (_dropout is null) return _fc2.call(hidden);
        using var dropped = _dropout.call(hidden);
        return _fc2.call(dropped);
    }

    private Tensor Block(Tensor input, Conv2d conv, BatchNorm2d? bn)
    {
        using var c = conv.call(input);
        if (bn is null)
        {
            using var r = c.relu();
            return _pool.call(r);
        }
        using var b = bn.call(c);
        using var rb = b.relu_();
        return _pool.call(rb);
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _conv1.Dispose();
            _bn1?.Dispose();
            _conv2.Dispose();
            _bn2?.Dispose();
            _pool.Dispose();
            _fc1.Dispose();
            _dropout?.Dispose();
            _fc2.Dispose();
        }
        base.Dispose(disposing);
    }
}

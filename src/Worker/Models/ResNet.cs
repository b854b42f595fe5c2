using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Orchestrator.Worker.Models;

/// <summary>Which first layers a <see cref="ResNet"/> uses.</summary>
public enum ResNetStem
{
    /// <summary>3×3 stride-1 conv + BN + ReLU, no max-pool: keeps resolution for 28–64 px images.</summary>
    Cifar,

    /// <summary>7×7 stride-2 conv + BN + ReLU + 3×3 stride-2 max-pool (torchvision's stem).</summary>
    ImageNet,
}

/// <summary>
/// torchvision's ResNet (v1.5: the stride of a bottleneck sits on its 3×3 conv) for any number of input
/// channels and classes. Parameter and buffer names equal torchvision's state-dict names (conv1, bn1,
/// layer1.0.conv1, layer2.0.downsample.0, fc, ...) so PyTorch checkpoints load by name.
/// </summary>
public sealed class ResNet : ImageClassifier
{
    [ComponentName(Name = "conv1")] private readonly Conv2d _conv1;
    [ComponentName(Name = "bn1")] private readonly BatchNorm2d _bn1;
    [ComponentName(Name = "maxpool")] private readonly MaxPool2d? _maxpool;
    [ComponentName(Name = "layer1")] private readonly Sequential _layer1;
    [ComponentName(Name = "layer2")] private readonly Sequential _layer2;
    [ComponentName(Name = "layer3")] private readonly Sequential _layer3;
    [ComponentName(Name = "layer4")] private readonly Sequential _layer4;
    [ComponentName(Name = "avgpool")] private readonly AdaptiveAvgPool2d _avgpool;
    [ComponentName(Name = "dropout")] private readonly Dropout? _dropout;
    // Not readonly: ReplaceHead swaps it.
    [ComponentName(Name = "fc")] private Linear _fc;

    /// <summary>
    /// Builds a ResNet. <paramref name="layers"/> holds the block count of each of the four stages
    /// ([2,2,2,2] for ResNet-18, [3,4,6,3] for ResNet-34/50); <paramref name="bottleneck"/> picks
    /// Bottleneck (expansion 4) over BasicBlock. <paramref name="zeroInitResidual"/> starts the last BN of
    /// every block at γ=0, so each block begins as the identity (Goyal et al.; off by default, as in torchvision).
    /// </summary>
    public ResNet(string name, int[] layers, bool bottleneck, int inChannels, int numClasses, ResNetStem stem,
        double dropout = 0, bool zeroInitResidual = false) : base(name)
    {
        ArgumentNullException.ThrowIfNull(layers);
        if (layers.Length != 4) throw new ArgumentException("a ResNet has four stages", nameof(layers));
        ArgumentOutOfRangeException.ThrowIfLessThan(inChannels, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(numClasses, 1);
        if (dropout is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(dropout), dropout, "must be in [0, 1)");

        Stem = stem;
        _conv1 = stem == ResNetStem.ImageNet
            ? nn.Conv2d(inChannels, 64, 7, stride: 2, padding: 3, bias: false)
            : nn.Conv2d(inChannels, 64, 3, stride: 1, padding: 1, bias: false);
        _bn1 = nn.BatchNorm2d(64);
        _maxpool = stem == ResNetStem.ImageNet ? nn.MaxPool2d(3, stride: 2, padding: 1) : null;

        var expansion = bottleneck ? Bottleneck.Expansion : BasicBlock.Expansion;
        var inplanes = 64;
        _layer1 = MakeLayer(bottleneck, ref inplanes, 64, layers[0], 1);
        _layer2 = MakeLayer(bottleneck, ref inplanes, 128, layers[1], 2);
        _layer3 = MakeLayer(bottleneck, ref inplanes, 256, layers[2], 2);
        _layer4 = MakeLayer(bottleneck, ref inplanes, 512, layers[3], 2);
        _avgpool = nn.AdaptiveAvgPool2d(1);
        _dropout = dropout > 0 ? nn.Dropout(dropout) : null;
        _fc = nn.Linear(512 * expansion, numClasses);
        RegisterComponents();
        Initialize(zeroInitResidual);
    }

    /// <summary>The stem this network was built with.</summary>
    public ResNetStem Stem { get; }

    /// <inheritdoc />
    public override int NumClasses => (int)_fc.weight!.shape[0];

    /// <inheritdoc />
    public override string HeadName => "fc";

    /// <inheritdoc />
    public override void ReplaceHead(int numClasses)
    {
        var old = _fc;
        _fc = (Linear)NewHeadLike(old, numClasses);
        ReplaceSubmodule("fc", _fc);
        old.Dispose();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor input)
    {
        using var c1 = _conv1.call(input);
        using var b1 = _bn1.call(c1);
        b1.relu_();
        using var stem = _maxpool is null ? b1.alias() : _maxpool.call(b1);
        using var l1 = _layer1.call(stem);
        using var l2 = _layer2.call(l1);
        using var l3 = _layer3.call(l2);
        using var l4 = _layer4.call(l3);
        using var pooled = _avgpool.call(l4);
        using var flat = pooled.flatten(1);
        if (_dropout is null) return _fc.call(flat);
        using var dropped = _dropout.call(flat);
        return _fc.call(dropped);
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _conv1.Dispose();
            _bn1.Dispose();
            _maxpool?.Dispose();
            _layer1.Dispose();
            _layer2.Dispose();
            _layer3.Dispose();
            _layer4.Dispose();
            _avgpool.Dispose();
            _dropout?.Dispose();
            _fc.Dispose();
        }
        base.Dispose(disposing);
    }

    private static Sequential MakeLayer(bool bottleneck, ref int inplanes, int planes, int blocks, int stride)
    {
        var expansion = bottleneck ? Bottleneck.Expansion : BasicBlock.Expansion;
        Sequential? downsample = null;
        if (stride != 1 || inplanes != planes * expansion)
        {
            // torchvision's names: downsample.0 (1×1 conv) and downsample.1 (BN).
            downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * expansion, 1, stride: stride, bias: false),
                nn.BatchNorm2d(planes * expansion));
        }
        // Sequential names its children "0", "1", ... as torchvision's layerN.K does.
        var list = new List<nn.Module<Tensor, Tensor>>(blocks)
        {
            bottleneck ? new Bottleneck(inplanes, planes, stride, downsample) : new BasicBlock(inplanes, planes, stride, downsample),
        };
        inplanes = planes * expansion;
        for (var i = 1; i < blocks; i++)
            list.Add(bottleneck ? new Bottleneck(inplanes, planes, 1, null) : new BasicBlock(inplanes, planes, 1, null));
        return nn.Sequential(list);
    }

    private void Initialize(bool zeroInitResidual)
    {
        // torchvision: Kaiming-normal (fan_out, ReLU) convs, BN γ=1 β=0; Linear keeps PyTorch's default.
        using var noGrad = torch.no_grad();
        foreach (var (_, module) in named_modules())
        {
            switch (module)
            {
                case Conv2d conv:
                    nn.init.kaiming_normal_(conv.weight, mode: nn.init.FanInOut.FanOut, nonlinearity: nn.init.NonlinearityType.ReLU);
                    break;
                case BatchNorm2d bn:
                    nn.init.ones_(bn.weight);
                    nn.init.zeros_(bn.bias);
                    break;
            }
        }
        if (!zeroInitResidual) return;
        foreach (var (_, module) in named_modules())
        {
            switch (module)
            {
                case BasicBlock basic: nn.init.zeros_(basic.LastBatchNormWeight); break;
                case Bottleneck bottle: nn.init.zeros_(bottle.LastBatchNormWeight); break;
            }
        }
    }
}

/// <summary>torchvision's BasicBlock: two 3×3 convs with BN, plus the (optionally projected) input.</summary>
internal sealed class BasicBlock : nn.Module<Tensor, Tensor>
{
    public const int Expansion = 1;

    [ComponentName(Name = "conv1")] private readonly Conv2d _conv1;
    [ComponentName(Name = "bn1")] private readonly BatchNorm2d _bn1;
    [ComponentName(Name = "conv2")] private readonly Conv2d _conv2;
    [ComponentName(Name = "bn2")] private readonly BatchNorm2d _bn2;
    [ComponentName(Name = "downsample")] private readonly Sequential? _downsample;

    public BasicBlock(int inplanes, int planes, int stride, Sequential? downsample) : base(nameof(BasicBlock))
    {
        _conv1 = nn.Conv2d(inplanes, planes, 3, stride: stride, padding: 1, bias: false);
        _bn1 = nn.BatchNorm2d(planes);
        _conv2 = nn.Conv2d(planes, planes, 3, stride: 1, padding: 1, bias: false);
        _bn2 = nn.BatchNorm2d(planes);
        _downsample = downsample;
        RegisterComponents();
    }

    public Tensor LastBatchNormWeight => _bn2.weight!;

    public override Tensor forward(Tensor input)
    {
        using var c1 = _conv1.call(input);
        using var b1 = _bn1.call(c1);
        b1.relu_();
        using var c2 = _conv2.call(b1);
        var output = _bn2.call(c2);
        if (_downsample is null)
        {
            output.add_(input);
        }
        else
        {
            using var identity = _downsample.call(input);
            output.add_(identity);
        }
        return output.relu_();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _conv1.Dispose();
            _bn1.Dispose();
            _conv2.Dispose();
            _bn2.Dispose();
            _downsample?.Dispose();
        }
        base.Dispose(disposing);
    }
}

/// <summary>torchvision's Bottleneck (v1.5): 1×1 reduce, 3×3 (carrying the stride), 1×1 expand ×4.</summary>
internal sealed class Bottleneck : nn.Module<Tensor, Tensor>
{
    public const int Expansion = 4;

    [ComponentName(Name = "conv1")] private readonly Conv2d _conv1;
    [ComponentName(Name = "bn1")] private readonly BatchNorm2d _bn1;
    [ComponentName(Name = "conv2")] private readonly Conv2d _conv2;
    [ComponentName(Name = "bn2")] private readonly BatchNorm2d _bn2;
    [ComponentName(Name = "conv3")] private readonly Conv2d _conv3;
    [ComponentName(Name = "bn3")] private readonly BatchNorm2d _bn3;
    [ComponentName(Name = "downsample")] private readonly Sequential? _downsample;

    public Bottleneck(int inplanes, int planes, int stride, Sequential? downsample) : base(nameof(Bottleneck))
    {
        _conv1 = nn.Conv2d(inplanes, planes, 1, bias: false);
        _bn1 = nn.BatchNorm2d(planes);
        _conv2 = nn.Conv2d(planes, planes, 3, stride: stride, padding: 1, bias: false);
        _bn2 = nn.BatchNorm2d(planes);
        _conv3 = nn.Conv2d(planes, planes * Expansion, 1, bias: false);
        _bn3 = nn.BatchNorm2d(planes * Expansion);
        _downsample = downsample;
        RegisterComponents();
    }

    public Tensor LastBatchNormWeight => _bn3.weight!;

    public override Tensor forward(Tensor input)
    {
        using var c1 = _conv1.call(input);
        using var b1 = _bn1.call(c1);
        b1.relu_();
        using var c2 = _conv2.call(b1);
        using var b2 = _bn2.call(c2);
        b2.relu_();
        using var c3 = _conv3.call(b2);
        var output = _bn3.call(c3);
        if (_downsample is null)
        {
            output.add_(input);
        }
        else
        {
            using var identity = _downsample.call(input);
            output.add_(identity);
        }
        return output.relu_();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _conv1.Dispose();
            _bn1.Dispose();
            _conv2.Dispose();
            _bn2.Dispose();
            _conv3.Dispose();
            _bn3.Dispose();
            _downsample?.Dispose();
        }
        base.Dispose(disposing);
    }
}

using Orchestrator.Sdk;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MyModels;

/// <summary>
/// Exports the model "tiny-net": <c>model: { plugin: plugins/MyModels.dll, name: tiny-net, args: { width: 16 } }</c>.
/// Arguments: <c>width</c> (channels of the first conv, default 16) and <c>hidden</c> (units of the
/// hidden layer, default 64); <c>model.dropout</c> applies before the last layer.
/// </summary>
[PluginExport("tiny-net")]
public sealed class TinyNetFactory : IModelFactory
{
    public nn.Module<Tensor, Tensor> Create(ModelRequest request)
    {
        var width = request.Args.GetInt("width", 16);
        var hidden = request.Args.GetInt("hidden", 64);
        if (width is < 1 or > 1024) throw new ArgumentException($"model.args.width must be between 1 and 1024 (got {width})");
        return new TinyNet(request.Input.Channels, request.Input.Height, request.Input.Width, width, hidden, request.NumClasses, request.Dropout);
    }
}

/// <summary>Two conv blocks (conv, ReLU, 2×2 max-pool) and two linear layers.</summary>
public sealed class TinyNet : nn.Module<Tensor, Tensor>
{
    private readonly Conv2d conv1;
    private readonly Conv2d conv2;
    private readonly Linear fc1;
    private readonly Dropout dropout;
    private readonly Linear fc2;

    public TinyNet(int channels, int height, int width, int filters, int hidden, int classes, double dropoutRate) : base("tiny-net")
    {
        conv1 = nn.Conv2d(channels, filters, 3, padding: 1);
        conv2 = nn.Conv2d(filters, 2 * filters, 3, padding: 1);
        fc1 = nn.Linear(2 * filters * (height / 4) * (width / 4), hidden);
        dropout = nn.Dropout(dropoutRate);
        fc2 = nn.Linear(hidden, classes);
        RegisterComponents();
    }

    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var x = nn.functional.max_pool2d(nn.functional.relu(conv1.forward(input)), 2);
        x = nn.functional.max_pool2d(nn.functional.relu(conv2.forward(x)), 2);
        x = nn.functional.relu(fc1.forward(x.flatten(1)));
        return fc2.forward(dropout.forward(x)).MoveToOuterDisposeScope();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            conv1.Dispose();
            conv2.Dispose();
            fc1.Dispose();
            dropout.Dispose();
            fc2.Dispose();
        }
        base.Dispose(disposing);
    }
}

using Orchestrator.Worker.Models;
using TorchSharp;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Orchestrator.Worker.Plugins;

/// <summary>
/// A plug-in's module as the training engine's <see cref="ImageClassifier"/>. Its parameters are the
/// plug-in module's, under "net." in checkpoints; a forward pass that throws names the plug-in. It has
/// no known classifier head, so transfer learning (which replaces the head) is refused at validation.
/// </summary>
internal sealed class PluginModel : ImageClassifier
{
    [ComponentName(Name = "net")] private readonly nn.Module<Tensor, Tensor> _net;
    private readonly string _plugin;
    private readonly string _what;

    public PluginModel(nn.Module<Tensor, Tensor> module, int numClasses, string plugin, string name) : base(name)
    {
        _net = module;
        NumClasses = numClasses;
        _plugin = plugin;
        _what = $"model '{name}'";
        RegisterComponents();
    }

    public override int NumClasses { get; }

    // No parameter name starts with this: nothing counts as the head.
    public override string HeadName => "\0head";

    public override void ReplaceHead(int numClasses) =>
        throw new NotSupportedException($"plug-in {_plugin}: {_what} has no known classifier head to replace");

    public override Tensor forward(Tensor input)
    {
        try
        {
            return _net.forward(input);
        }
        catch (Exception e)
        {
            throw PluginException.Failed(_plugin, $"{_what}, in its forward pass,", e);
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) _net.Dispose();
        base.Dispose(disposing);
    }
}

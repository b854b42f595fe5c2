using TorchSharp;
using static TorchSharp.torch;

namespace Orchestrator.Worker.Models;

/// <summary>
/// An image classifier: NCHW float images in, [N, <see cref="NumClasses"/>] logits out. The final Linear
/// layer is the "head"; transfer learning replaces it and may freeze everything else.
/// </summary>
public abstract class ImageClassifier : nn.Module<Tensor, Tensor>
{
    /// <summary>Creates the module; subclasses build their layers and call <c>RegisterComponents()</c>.</summary>
    protected ImageClassifier(string name) : base(name)
    {
    }

    /// <summary>Width of the output (number of classes the head predicts).</summary>
    public abstract int NumClasses { get; }

    /// <summary>Parameter-name prefix of the final Linear layer, e.g. "fc".</summary>
    public abstract string HeadName { get; }

    /// <summary>Replaces the final Linear layer with a freshly initialised one for numClasses.</summary>
    /// <remarks>The new layer is on the device and dtype of the old one; build the optimizer afterwards.</remarks>
    public abstract void ReplaceHead(int numClasses);

    /// <summary>Sets requires_grad=false on every parameter outside the head.</summary>
    public void FreezeBackbone()
    {
        foreach (var (name, parameter) in named_parameters())
        {
            if (!IsHeadName(name)) parameter.requires_grad = false;
        }
    }

    /// <summary>Name of the first conv's weight: transfer learning adapts it when input channels differ.</summary>
    internal const string InputConvName = "conv1.weight";

    /// <summary>Whether a parameter or buffer name belongs to the head.</summary>
    public bool IsHeadName(string name) =>
        name.StartsWith(HeadName + ".", StringComparison.Ordinal);

    /// <summary>
    /// A fresh Linear(inFeatures → numClasses) on the device and dtype of <paramref name="like"/>, with
    /// PyTorch's default initialisation (TorchSharp's Linear constructor does the same).
    /// </summary>
    private protected static nn.Module<Tensor, Tensor> NewHeadLike(TorchSharp.Modules.Linear like, int numClasses)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(numClasses, 1);
        var inFeatures = (int)like.weight!.shape[1];
        var head = nn.Linear(inFeatures, numClasses);
        head.to(like.weight.dtype).to(like.weight.device);
        return head;
    }

    /// <summary>Swaps the registered submodule <paramref name="name"/> for <paramref name="replacement"/>.</summary>
    private protected void ReplaceSubmodule(string name, nn.Module replacement)
    {
        // register_module refuses a name that is already taken; registering null removes the old entry first.
        register_module(name, null!);
        register_module(name, replacement);
    }
}

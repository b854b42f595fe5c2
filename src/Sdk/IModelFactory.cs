using Orchestrator.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace Orchestrator.Sdk;

/// <summary>
/// Builds a model for a trial: NCHW float images of <see cref="ModelRequest.Input"/> in, one logit per
/// class out. The built-in models (simple-cnn, resnet18/34/50) are factories of this kind too.
/// </summary>
/// <remarks>
/// Build on the CPU and leave the module in training mode: the worker moves it to its device, seeds
/// it beforehand (so initialisation is reproducible) and saves its <c>state_dict</c> in checkpoints.
/// Call <c>RegisterComponents()</c> in the module's constructor so that every parameter is trained.
/// </remarks>
public interface IModelFactory
{
    /// <summary>Creates a fresh, randomly initialised model.</summary>
    /// <exception cref="FormatException">An argument is malformed (see <see cref="PluginArgs"/>).</exception>
    /// <exception cref="ArgumentException">The arguments do not make a model (say which and why).</exception>
    nn.Module<Tensor, Tensor> Create(ModelRequest request);
}

/// <summary>What a model is built for.</summary>
/// <param name="Input">The shape of one input image after augmentation (channels, height, width).</param>
/// <param name="NumClasses">The width of the output.</param>
/// <param name="Dropout">The <c>model.dropout</c> field: dropout before the classifier, 0 = off.</param>
/// <param name="Args">The <c>model.args</c> section; for built-in models also <c>stem</c> and <c>batchNorm</c>.</param>
public sealed record ModelRequest(ImageShape Input, int NumClasses, double Dropout, PluginArgs Args);

using System.Globalization;
using Orchestrator.Data;
using Orchestrator.Trials;
using TorchSharp;
using static TorchSharp.torch;

namespace Orchestrator.Worker.Training;

/// <summary>Classification losses: cross-entropy (label smoothing, class weights) and focal loss.</summary>
public sealed class LossFunction : IDisposable
{
    private readonly LossSpec _spec;
    private readonly Tensor? _weights;

    public LossFunction(LossSpec spec, float[]? classWeights, Device device)
    {
        _spec = spec;
        _weights = classWeights is null ? null : torch.tensor(classWeights).to(device).DetachFromDisposeScope();
    }

    public float[]? ClassWeights => _weights?.cpu().data<float>().ToArray();

    /// <summary>Mean loss over the batch.</summary>
    public Tensor Compute(Tensor logits, Tensor labels)
    {
        if (_spec.Name == "focal") return Focal(logits, labels);
        return nn.functional.cross_entropy(logits, labels, _weights, label_smoothing: _spec.LabelSmoothing);
    }

    /// <summary>
    /// Focal loss (Lin et al.): −α_y (1 − p_y)^γ log p_y, with α the class weights when given. It
    /// down-weights easy examples so rare classes keep contributing gradient.
    /// </summary>
    private Tensor Focal(Tensor logits, Tensor labels)
    {
        using var logp = nn.functional.log_softmax(logits, 1);
        using var index = labels.unsqueeze(1);
        using var logpt = logp.gather(1, index).squeeze(1);
        using var pt = logpt.exp();
        using var focus = (1 - pt).pow(_spec.FocalGamma);
        var loss = -(focus * logpt);
        if (_weights is not null)
        {
            using var alpha = _weights.index_select(0, labels);
            using var weighted = loss * alpha;
            loss.Dispose();
            using var denom = alpha.sum();
            return weighted.sum() / denom;
        }
        using (loss) return loss.mean();
    }

    /// <summary>Resolves <c>loss.classWeights</c>: explicit numbers, or "balanced" = N / (K · count_k) from the training labels.</summary>
    public static float[]? ResolveClassWeights(LossSpec spec, IImageDataset train, int numClasses)
    {
        if (spec.ClassWeights is not { Count: > 0 } w) return null;
        if (w is ["balanced"])
        {
            var counts = new long[numClasses];
            for (var i = 0; i < train.Count; i++) counts[train.GetLabel(i)]++;
            return counts.Select(c => c == 0 ? 0f : (float)((double)train.Count / (numClasses * c))).ToArray();
        }
        if (w.Count != numClasses)
            throw new Orchestrator.Specs.SpecException($"loss.classWeights: {w.Count} weights given for {numClasses} classes");
        return w.Select(x => float.Parse(x, CultureInfo.InvariantCulture)).ToArray();
    }

    public void Dispose() => _weights?.Dispose();
}

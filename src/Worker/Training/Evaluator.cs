using Orchestrator.Worker.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace Orchestrator.Worker.Training;

/// <summary>Evaluates a classifier: cross-entropy, top-1, top-5, per-class accuracy, confusion matrix.</summary>
public static class Evaluator
{
    /// <summary>Runs synchronously on the calling thread, under no_grad, in eval mode; restores train mode after.</summary>
    public static EvalResult Evaluate(nn.Module<Tensor, Tensor> model, BatchLoader loader, DeviceTransform transform, int numClasses, CancellationToken ct)
    {
        var wasTraining = model.training;
        model.eval();
        var confusion = new long[numClasses][];
        for (var i = 0; i < numClasses; i++) confusion[i] = new long[numClasses];
        double lossSum = 0;
        long top5 = 0, count = 0;
        try
        {
            using var noGrad = torch.no_grad();
            foreach (var batch in loader.Epoch(0, ct))
            {
                using var scope = torch.NewDisposeScope();
                var (x, y) = transform.Apply(batch, train: false);
                loader.Return(batch);
                var logits = model.forward(x);
                lossSum += nn.functional.cross_entropy(logits, y, reduction: nn.Reduction.Sum).cpu().ToDouble();
                var k = Math.Min(5, numClasses);
                var (_, topIdx) = logits.topk(k, dim: 1);
                top5 += topIdx.eq(y.unsqueeze(1)).any(1).sum().cpu().ToInt64();
                var predicted = logits.argmax(1).cpu().data<long>().ToArray();
                var truth = y.cpu().data<long>().ToArray();
                for (var i = 0; i < predicted.Length; i++) confusion[truth[i]][predicted[i]]++;
                count += predicted.Length;
            }
        }
        finally
        {
            if (wasTraining) model.train();
        }
        var correct = 0L;
        var perClass = new double[numClasses];
        for (var c = 0; c < numClasses; c++)
        {
            correct += confusion[c][c];
            var total = confusion[c].Sum();
            perClass[c] = total == 0 ? double.NaN : (double)confusion[c][c] / total;
        }
        return new EvalResult((int)count, count == 0 ? double.NaN : lossSum / count,
            count == 0 ? 0 : (double)correct / count, count == 0 ? 0 : (double)top5 / count, perClass, confusion);
    }
}

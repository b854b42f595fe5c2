using TorchSharp;
using static TorchSharp.torch;

namespace Orchestrator.Worker.Training;

public sealed partial class TrainingSession
{
    /// <summary>
    /// Runs a learning-rate range test on this session's model, data, loss and augmentation: one
    /// batch per step at an exponentially growing rate, until the last step or until the smoothed
    /// loss diverges. The session is left as it was: the weights and buffers are copied back
    /// afterwards and the steps go through a throwaway optimiser of the trial's kind, so the
    /// session's own optimiser state (momentum, Adam moments) is never touched. Synchronous, on
    /// the calling thread; every step runs inside its own dispose scope.
    /// </summary>
    /// <param name="onStep">Called after every step on this thread (keep it quick).</param>
    public LrRangeResult FindLearningRate(LrRangeOptions options, Action<LrRangePoint>? onStep = null, CancellationToken ct = default)
    {
        options.Validate();
        if (_dist is not null) throw new InvalidOperationException("the range test runs on one process, not in a data-parallel trial");
        var curve = new LrRangeCurve(options);
        var saved = SnapshotWeights();
        var wasTraining = _model.training;
        using var optimizer = OptimizerFactory.Create(_spec.Optimizer, _trainable);
        try
        {
            _model.train();
            // The sampler's epochs, from one past any the session has trained, give fresh orders
            // when the test needs more batches than one epoch holds.
            for (var epoch = _epochsCompleted + 1; !curve.Done; epoch++)
            {
                if (_trainLoader.BatchesPerEpoch == 0) throw new InvalidOperationException("the training split is empty");
                foreach (var batch in _trainLoader.Epoch(epoch, ct))
                {
                    var lr = curve.NextLr;
                    OptimizerFactory.SetLearningRate(optimizer, lr);
                    double loss;
                    using (torch.NewDisposeScope())
                    {
                        var (x, y) = _transform.Apply(batch, train: true);
                        _trainLoader.Return(batch);
                        // One device sync per step: the test needs every loss to decide when to stop.
                        loss = Optimize(optimizer, x, y).Loss.ToDouble();
                    }
                    // Recorded whether or not anyone listens (a null-conditional call would skip its argument).
                    var point = curve.Add(loss);
                    onStep?.Invoke(point);
                    if (curve.Done) break;
                }
            }
        }
        finally
        {
            RestoreWeights(saved);
            _model.train(wasTraining);
            // No gradient of the test is left for the session's optimiser to see.
            _optimizer.zero_grad();
        }
        return curve.Result();
    }

    /// <summary>Copies of every parameter and buffer (batch-norm statistics move during the test too).</summary>
    private Dictionary<string, Tensor> SnapshotWeights()
    {
        using var _ = torch.no_grad();
        return _model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());
    }

    private void RestoreWeights(Dictionary<string, Tensor> saved)
    {
        using (torch.no_grad())
        {
            foreach (var (name, live) in _model.state_dict())
                live.copy_(saved[name]);
        }
        foreach (var t in saved.Values) t.Dispose();
    }
}

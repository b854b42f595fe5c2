using System.Globalization;

namespace Orchestrator.Worker.Training;

/// <summary>
/// The plain-text lines a training run prints: `orch train` writes them when its output is not a
/// terminal, and a worker writes them to the trial's log (`orch logs TRIAL`). One format for both.
/// </summary>
public static class TrainingLines
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>"train simple_cnn (1,234 parameters) on cpu, 10 epochs, resuming after epoch 3; run folder …".</summary>
    public static string RunStart(RunInfo info) =>
        string.Format(Inv, "train {0} ({1:N0} parameters) on {2}, {3} epochs{4}; data {5}: {6:N0} train, {7:N0} validation",
            info.Model, info.Parameters, info.Device, info.Epochs,
            info.StartEpoch > 0 ? string.Format(Inv, ", resuming after epoch {0}", info.StartEpoch) : "",
            info.Dataset, info.TrainCount, info.ValidationCount);

    /// <summary>One epoch's figures: "epoch 2/10  train loss 0.4321 acc 0.8512  val loss … lr 0.01  2,300 img/s  12.3s".</summary>
    public static string Epoch(EpochMetrics m, int? epochs)
    {
        var line = string.Format(Inv,
            "epoch {0}/{1}  train loss {2:F4} acc {3:F4}  val loss {4:F4} acc {5:F4} top5 {6:F4}  lr {7:G3}  {8:N0} img/s  {9:F1}s",
            m.Epoch, epochs, m.TrainLoss, m.TrainAccuracy, m.ValLoss, m.ValAccuracy, m.ValTop5, m.LearningRate, m.ImagesPerSecond, m.Seconds);
        if (double.IsFinite(m.Sparsity)) line += string.Format(Inv, "  sparsity {0:P1}", m.Sparsity);
        if (m.SkippedSteps > 0) line += string.Format(Inv, "  fp16 overflow: {0} steps skipped, loss scale {1}", m.SkippedSteps, m.LossScale);
        return line;
    }
}

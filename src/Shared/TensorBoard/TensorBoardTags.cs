using Orchestrator.TensorBoard.Protos.HParams;
using Orchestrator.Trials;

namespace Orchestrator.TensorBoard;

/// <summary>
/// The one mapping from our metric names (<see cref="MetricNames"/>: those of metrics.jsonl and the coordinator's metric
/// points: train_loss, val_accuracy, lr…) to TensorBoard scalar tags, grouped so the dashboard
/// shows training and validation side by side. Unknown names go under "system/".
/// </summary>
public static class TensorBoardTags
{
    private static readonly (string Metric, string Tag, string Display, DatasetType Dataset)[] Known =
    [
        (MetricNames.ValAccuracy, "val/accuracy", "validation accuracy", DatasetType.DatasetValidation),
        (MetricNames.ValLoss, "val/loss", "validation loss", DatasetType.DatasetValidation),
        (MetricNames.ValTop5, "val/top5", "validation top-5 accuracy", DatasetType.DatasetValidation),
        (MetricNames.TrainLoss, "train/loss", "training loss", DatasetType.DatasetTraining),
        (MetricNames.TrainAccuracy, "train/accuracy", "training accuracy", DatasetType.DatasetTraining),
        (MetricNames.LearningRate, "train/learning_rate", "learning rate", DatasetType.DatasetTraining),
        (MetricNames.Sparsity, "train/sparsity", "weight sparsity (pruning)", DatasetType.DatasetTraining),
    ];

    /// <summary>The scalar tag of a metric.</summary>
    public static string For(string metric)
    {
        foreach (var k in Known)
        {
            if (k.Metric == metric) return k.Tag;
        }
        return "system/" + metric;
    }

    /// <summary>The metrics the HParams dashboard offers as columns, in the order shown.</summary>
    public static IEnumerable<MetricInfo> MetricInfos() => Known.Select(k => new MetricInfo
    {
        Name = new MetricName { Group = "", Tag = k.Tag },
        DisplayName = k.Display,
        DatasetType = k.Dataset,
    });
}

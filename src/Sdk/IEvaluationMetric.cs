namespace Orchestrator.Sdk;

/// <summary>
/// An extra validation metric, computed after each epoch's evaluation from its confusion matrix
/// (so it is exact for data-parallel trials too, whose ranks' matrices are summed first) and
/// reported beside val_accuracy as <c>val_&lt;name&gt;</c>: macro-F1, balanced accuracy, the recall of one
/// class, Cohen's kappa. Pure: no state between calls.
/// </summary>
public interface IEvaluationMetric
{
    /// <summary>The metric's value for one evaluation; NaN when it is undefined (it is then not reported).</summary>
    double Compute(EvaluationResult result);
}

/// <summary>What one evaluation of the validation split found.</summary>
/// <param name="Classes">Class names, by label.</param>
/// <param name="Confusion">Counts by [true label][predicted label].</param>
/// <param name="Loss">Mean cross-entropy over the split.</param>
/// <param name="Count">Images evaluated.</param>
public sealed record EvaluationResult(IReadOnlyList<string> Classes, long[][] Confusion, double Loss, int Count);

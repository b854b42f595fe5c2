using Orchestrator.Sdk;

namespace MyModels;

/// <summary>
/// Exports the metric "macro-f1": the mean over classes of the F1 score (the harmonic mean of
/// precision and recall), reported as val_macro-f1. Classes with no images and no predictions are
/// left out of the mean.
/// </summary>
[PluginExport("macro-f1")]
public sealed class MacroF1 : IEvaluationMetric
{
    public double Compute(EvaluationResult result)
    {
        var m = result.Confusion;
        double sum = 0;
        var classes = 0;
        for (var c = 0; c < m.Length; c++)
        {
            long truePositives = m[c][c], actual = 0, predicted = 0;
            for (var k = 0; k < m.Length; k++)
            {
                actual += m[c][k];
                predicted += m[k][c];
            }
            if (actual + predicted == 0) continue;
            sum += 2.0 * truePositives / (actual + predicted);
            classes++;
        }
        return classes == 0 ? double.NaN : sum / classes;
    }
}

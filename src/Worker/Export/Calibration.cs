using static TorchSharp.torch;

namespace Orchestrator.Worker.Export;

/// <summary>The smallest and largest value a tensor took over the calibration images.</summary>
public readonly record struct ValueRange(float Min, float Max);

/// <summary>Activation ranges seen on calibration images, by value name, and what they were measured on.</summary>
/// <param name="Images">How many images were run.</param>
/// <param name="Source">Where the images came from, for the model's metadata (e.g. "fashion-mnist/train").</param>
public sealed record CalibrationResult(IReadOnlyDictionary<string, ValueRange> Ranges, int Images, string Source);

/// <summary>
/// Post-training calibration: runs an <see cref="InferenceGraph"/> on calibration batches (with
/// TorchSharp, see <see cref="GraphEvaluator"/>) and records each value's minimum and maximum.
/// </summary>
public static class Calibrator
{
    /// <summary>
    /// Ranges of every value of <paramref name="graph"/> over <paramref name="batches"/> ([N, C, H, W]
    /// float32 graph inputs; the caller owns them).
    /// </summary>
    /// <exception cref="InvalidOperationException">No batches, or only empty ones: nothing to calibrate on.</exception>
    public static CalibrationResult Calibrate(InferenceGraph graph, IEnumerable<Tensor> batches, string source)
    {
        ArgumentNullException.ThrowIfNull(graph);
        ArgumentNullException.ThrowIfNull(batches);
        var ranges = new Dictionary<string, ValueRange>(StringComparer.Ordinal);
        var images = 0;
        foreach (var batch in batches)
        {
            if (batch.shape[0] == 0) continue;
            images += (int)batch.shape[0];
            using var logits = GraphEvaluator.Run(graph, batch, (name, value) =>
            {
                var (min, max) = value.aminmax();
                using (min)
                using (max)
                {
                    var r = new ValueRange(min.item<float>(), max.item<float>());
                    if (!float.IsFinite(r.Min) || !float.IsFinite(r.Max))
                        throw new InvalidOperationException($"calibration: {name} is not finite (NaN or infinity) on {source}; the model cannot be quantized");
                    ranges[name] = ranges.TryGetValue(name, out var seen) ? new ValueRange(Math.Min(seen.Min, r.Min), Math.Max(seen.Max, r.Max)) : r;
                }
            });
        }
        if (images == 0)
            throw new InvalidOperationException($"cannot quantize: the calibration set ({source}) is empty; int8 quantization needs at least one calibration image");
        return new CalibrationResult(ranges, images, source);
    }
}

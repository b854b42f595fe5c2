using Xunit.Abstractions;
namespace Orchestrator.Interop.FunctionalTests;

/// <summary>Logit comparisons with a readable failure.</summary>
public static class Compare
{
    /// <summary>The bar: logits within 1e-4 of TorchSharp's.</summary>
    public const double Tolerance = 1e-4;

    public static double MaxAbsDiff(float[] expected, float[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        var max = 0.0;
        for (var i = 0; i < expected.Length; i++) max = Math.Max(max, Math.Abs((double)expected[i] - actual[i]));
        return max;
    }

    public static int[] Top1(float[] logits, int classes)
    {
        var rows = logits.Length / classes;
        var top = new int[rows];
        for (var r = 0; r < rows; r++)
        {
            var best = 0;
            for (var k = 1; k < classes; k++) if (logits[r * classes + k] > logits[r * classes + best]) best = k;
            top[r] = best;
        }
        return top;
    }

    /// <summary>Every logit within <see cref="Tolerance"/>, and the same top-1 class for every image.</summary>
    public static void AssertSameLogits(float[] expected, float[] actual, int classes, string what, ITestOutputHelper? output = null)
    {
        var diff = MaxAbsDiff(expected, actual);
        var scale = expected.Max(Math.Abs);
        output?.WriteLine($"{what}: max |logit difference| {diff:E3}, largest |logit| {scale:G4}");
        Assert.True(diff <= Tolerance, $"{what}: logits differ from TorchSharp's by up to {diff:E3} (limit {Tolerance:E0}; largest |logit| {scale:G4})");
        var a = Top1(expected, classes);
        var b = Top1(actual, classes);
        var disagree = Enumerable.Range(0, a.Length).Count(i => a[i] != b[i]);
        Assert.True(disagree == 0, $"{what}: top-1 differs from TorchSharp's on {disagree} of {a.Length} images");
    }
}

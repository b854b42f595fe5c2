using System.Globalization;
using Orchestrator.Worker.Training;
using ScottPlot;

namespace Orchestrator.Cli.Output;

/// <summary>The picture of an LR range test: loss against learning rate on a log axis, drawn with ScottPlot.</summary>
internal static class LrRangePlot
{
    /// <summary>The smoothed-loss curve's colour (tests look for it in the PNG).</summary>
    public const string CurveHex = "#1F77B4";
    public const string SuggestionHex = "#D62728";
    public const int Width = 900, Height = 560;

    /// <summary>Writes the plot as a PNG to <paramref name="path"/> (its folder is created).</summary>
    public static void Save(LrRangeResult result, string path)
    {
        var finite = result.Points.Where(p => double.IsFinite(p.SmoothedLoss)).ToArray();
        var plot = new Plot();
        if (PlotFont.Name is { } font) plot.Font.Set(font);
        var raw = result.Points.Where(p => double.IsFinite(p.Loss)).ToArray();
        var batches = plot.Add.ScatterPoints(raw.Select(p => Math.Log10(p.LearningRate)).ToArray(), raw.Select(p => p.Loss).ToArray());
        batches.Color = Colors.Gray.WithAlpha(0.45);
        batches.MarkerSize = 4;
        batches.LegendText = "loss of each batch";

        var curve = plot.Add.ScatterLine(finite.Select(p => Math.Log10(p.LearningRate)).ToArray(), finite.Select(p => p.SmoothedLoss).ToArray());
        curve.Color = Color.FromHex(CurveHex);
        curve.LineWidth = 3;
        curve.LegendText = "smoothed loss";

        var suggested = plot.Add.VerticalLine(Math.Log10(result.SuggestedLr));
        suggested.Color = Color.FromHex(SuggestionHex);
        suggested.LineWidth = 2;
        suggested.LinePattern = LinePattern.Dashed;
        suggested.LegendText = "suggested " + result.SuggestedLr.ToString("G2", CultureInfo.InvariantCulture) + " (min-loss rate / 10)";

        var ticks = new ScottPlot.TickGenerators.NumericAutomatic
        {
            IntegerTicksOnly = true,
            MinorTickGenerator = new ScottPlot.TickGenerators.LogMinorTickGenerator(),
            LabelFormatter = x => "1e" + x.ToString("0", CultureInfo.InvariantCulture),
        };
        plot.Axes.Bottom.TickGenerator = ticks;
        plot.Axes.Bottom.Label.Text = "learning rate (log scale)";
        plot.Axes.Left.Label.Text = "training loss";
        plot.Axes.Title.Label.Text = "LR range test";
        plot.ShowLegend(Alignment.UpperLeft);

        // The diverged tail would flatten the interesting part: show from just below the minimum
        // to a little above where the curve started.
        var minStep = finite.First(p => p.SmoothedLoss == result.MinSmoothedLoss).Step;
        var low = Math.Min(result.MinSmoothedLoss, raw.Where(p => p.Step <= minStep).Min(p => p.Loss));
        var high = Math.Max(finite[0].SmoothedLoss, finite.Take(Math.Max(1, finite.Length / 2)).Max(p => p.SmoothedLoss));
        var pad = Math.Max(1e-3, (high - low) * 0.15);
        plot.Axes.SetLimitsY(Math.Max(0, low - pad), high + pad);
        plot.Axes.SetLimitsX(Math.Log10(result.Points[0].LearningRate) - 0.2, Math.Log10(result.Points[^1].LearningRate) + 0.2);

        var full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        plot.SavePng(full, Width, Height);
    }
}

using System.Globalization;
using Orchestrator.Protocol.V1;
using ScottPlot;

namespace Orchestrator.Cli.Output;

/// <summary>A trial to plot: its record, its objective (best value) and the objective at each epoch.</summary>
internal sealed record PlottedTrial(Trial Trial, double Objective, IReadOnlyList<(int Epoch, double Value)> Curve);

/// <summary>
/// Pictures of a sweep, drawn with ScottPlot: the learning curves of its best trials and a
/// parallel-coordinates plot of every trial's parameters against the objective.
/// </summary>
internal static class SweepPlots
{
    public const int Width = 1000, Height = 600;
    /// <summary>The best trial's colour on both plots (tests look for it in the PNGs).</summary>
    public const string BestHex = "#D62728";

    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>The objective per epoch of <paramref name="top"/> (best first), one line each.</summary>
    public static void LearningCurves(Sweep sweep, IReadOnlyList<PlottedTrial> top, int trialsWithMetric, string path)
    {
        var plot = NewPlot();
        var palette = new ScottPlot.Palettes.Category10();
        for (var rank = 0; rank < top.Count; rank++)
        {
            var t = top[rank];
            var curve = plot.Add.ScatterLine(t.Curve.Select(p => (double)p.Epoch).ToArray(), t.Curve.Select(p => p.Value).ToArray());
            // Best first: the best on top in red, the others in the palette's order (skipping its red).
            curve.Color = rank == 0 ? Color.FromHex(BestHex) : palette.GetColor(rank - 1 >= 3 ? rank : rank - 1);
            curve.LineWidth = rank == 0 ? 3 : 2;
            curve.MarkerSize = 6;
            curve.LegendText = $"#{rank + 1} {Label(t.Trial)}  {t.Objective.ToString("G4", Inv)}  {Parameters(t.Trial)}";
        }
        plot.Axes.Bottom.Label.Text = "epoch";
        plot.Axes.Left.Label.Text = sweep.ObjectiveMetric;
        plot.Axes.Title.Label.Text = $"{Title(sweep)}: {sweep.ObjectiveMetric} per epoch, best {top.Count} of {trialsWithMetric} trials";
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };
        var maxEpoch = top.SelectMany(t => t.Curve).Select(p => p.Epoch).DefaultIfEmpty(1).Max();
        plot.Axes.SetLimitsX(0.8, Math.Max(maxEpoch, 1) + 0.2);
        plot.ShowLegend(sweep.Goal == Goal.Minimize ? Alignment.UpperRight : Alignment.LowerRight);
        Save(plot, path);
    }

    /// <summary>
    /// One vertical axis per parameter and one for the objective (rightmost); each trial a line
    /// through its values, coloured by its objective (viridis: bright is better), the best in red.
    /// </summary>
    public static void ParallelCoordinates(Sweep sweep, IReadOnlyList<ParallelAxis> parameters, IReadOnlyList<PlottedTrial> trials,
        bool maximize, string path)
    {
        var plot = NewPlot();
        var objectives = trials.Select(t => t.Objective).ToList();
        var objective = ParallelAxis.Numeric(sweep.ObjectiveMetric, objectives.Min(), objectives.Max());
        var axes = parameters.Append(objective).ToList();
        var colormap = new ScottPlot.Colormaps.Viridis();
        double lo = objectives.Min(), hi = objectives.Max();
        // Worst first, so the better lines (and the best, last) are drawn on top.
        var ordered = maximize ? trials.OrderBy(t => t.Objective).ToList() : trials.OrderByDescending(t => t.Objective).ToList();
        for (var i = 0; i < ordered.Count; i++)
        {
            var t = ordered[i];
            var ys = axes.Take(parameters.Count).Select(a => a.Position(t.Trial.Parameters.GetValueOrDefault(a.Name)) ?? double.NaN)
                .Append(objective.Position(t.Objective.ToString("R", Inv)) ?? double.NaN).ToArray();
            var xs = Enumerable.Range(0, axes.Count).Select(x => (double)x).ToArray();
            var line = plot.Add.ScatterLine(xs, ys);
            var best = i == ordered.Count - 1;
            var quality = hi > lo ? (maximize ? (t.Objective - lo) / (hi - lo) : (hi - t.Objective) / (hi - lo)) : 1;
            line.Color = best ? Color.FromHex(BestHex) : colormap.GetColor(0.1 + 0.8 * quality).WithAlpha(0.8);
            line.LineWidth = best ? 4 : 2;
            line.MarkerSize = best ? 8 : 5;
            if (best) line.LegendText = $"best: {Label(t.Trial)}  {sweep.ObjectiveMetric} {t.Objective.ToString("G4", Inv)}";
        }
        for (var x = 0; x < axes.Count; x++)
        {
            var axis = plot.Add.VerticalLine(x);
            axis.Color = Colors.Black.WithAlpha(0.6);
            axis.LineWidth = 1;
            foreach (var (position, label) in axes[x].Ticks)
            {
                var text = plot.Add.Text(label, x, position);
                text.LabelFontSize = 11;
                text.LabelAlignment = Alignment.MiddleLeft;
                text.LabelFontColor = Colors.Black;
                text.LabelBackgroundColor = Colors.White.WithAlpha(0.7);
                text.OffsetX = 4;
            }
        }
        var names = new ScottPlot.TickGenerators.NumericManual();
        for (var x = 0; x < axes.Count; x++)
            names.AddMajor(x, axes[x].Name + (axes[x].IsLog ? "\n(log)" : x == axes.Count - 1 ? "\n(objective)" : ""));
        plot.Axes.Bottom.TickGenerator = names;
        plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericManual();
        plot.Axes.Left.Label.Text = "";
        plot.HideGrid();
        plot.Axes.SetLimits(-0.3, axes.Count - 0.4, -0.06, 1.06);
        plot.Axes.Title.Label.Text = $"{Title(sweep)}: parameters against {sweep.ObjectiveMetric} ({trials.Count} trials; brighter is better)";
        // Below the plot, where it hides no axis label.
        plot.ShowLegend(Edge.Bottom);
        Save(plot, path);
    }

    private static Plot NewPlot()
    {
        var plot = new Plot();
        if (PlotFont.Name is { } font) plot.Font.Set(font);
        return plot;
    }

    private static void Save(Plot plot, string path)
    {
        var full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        plot.SavePng(full, Width, Height);
    }

    private static string Title(Sweep s) => string.IsNullOrEmpty(s.Name) ? s.Id : $"{s.Name} ({s.Id})";

    private static string Label(Trial t) => $"trial {t.Index} ({t.Id})";

    private static string Parameters(Trial t) =>
        string.Join(", ", t.Parameters.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key}={p.Value}"));
}

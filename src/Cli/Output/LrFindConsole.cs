using System.Globalization;
using System.Text.Json.Nodes;
using Orchestrator.Worker.Training;
using Spectre.Console;
using Orchestrator.Trials;

namespace Orchestrator.Cli.Output;

/// <summary>
/// How `orch lr-find` talks to the user: a live progress bar on a terminal, a plain line every
/// tenth step when output is redirected, JSON lines with <c>--json</c> (the last line the summary).
/// </summary>
internal sealed class LrFindConsole(bool json)
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;
    private readonly IAnsiConsole _err = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
    private readonly bool _live = !json && !Console.IsErrorRedirected && AnsiConsole.Profile.Capabilities.Interactive;

    public void Start(string model, string dataset, string device, LrRangeOptions o)
    {
        if (json) return;
        _err.MarkupLine($"[grey]lr-find[/] {Markup.Escape(model)} on {Markup.Escape(dataset)} ({Markup.Escape(device)}): " +
                        $"{o.Steps} steps, learning rate {o.StartLr.ToString("G3", Inv)} → {o.EndLr.ToString("G3", Inv)}, stops when the smoothed loss passes {o.DivergenceFactor.ToString("G3", Inv)}× its best");
    }

    /// <summary>Runs <paramref name="test"/> on this thread with progress shown as each step reports.</summary>
    public LrRangeResult Run(int steps, Func<Action<LrRangePoint>, LrRangeResult> test)
    {
        if (!_live) return test(Report);
        LrRangeResult? result = null;
        _err.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
            .Start(ctx =>
            {
                // The test runs here, synchronously on this thread; Spectre refreshes from its own.
                var task = ctx.AddTask("lr-find", maxValue: steps);
                result = test(p =>
                {
                    task.Value = p.Step + 1;
                    task.Description = string.Format(Inv, "step {0}/{1}  lr {2:0.00E+0}  loss {3:F4}", p.Step + 1, steps, p.LearningRate, p.SmoothedLoss);
                });
                task.Value = task.MaxValue;
            });
        return result!;
    }

    private void Report(LrRangePoint p)
    {
        if (json)
        {
            Console.Out.WriteLine(new JsonObject
            {
                ["type"] = "step",
                ["step"] = p.Step,
                [MetricNames.LearningRate] = p.LearningRate,
                ["loss"] = Finite(p.Loss),
                ["smoothed_loss"] = Finite(p.SmoothedLoss),
            }.ToJsonString());
        }
        else if (p.Step % 10 == 9)
            _err.WriteLine(string.Format(Inv, "step {0}  lr {1:0.00E+0}  loss {2:F4}  smoothed {3:F4}", p.Step + 1, p.LearningRate, p.Loss, p.SmoothedLoss));
    }

    public void Summary(LrRangeResult r, string plot)
    {
        if (json)
        {
            Console.Out.WriteLine(new JsonObject
            {
                ["type"] = "summary",
                ["suggested_lr"] = r.SuggestedLr,
                ["min_loss_lr"] = r.MinLossLr,
                ["steepest_lr"] = r.SteepestLr,
                ["min_loss"] = r.MinSmoothedLoss,
                ["steps"] = r.Points.Count,
                ["diverged"] = r.Diverged,
                ["plot"] = plot,
            }.ToJsonString());
            return;
        }
        var table = new Table().Border(TableBorder.Rounded).Title("[bold]LR range test[/]")
            .AddColumn("").AddColumn(new TableColumn("learning rate").RightAligned()).AddColumn("meaning");
        table.AddRow("[green]suggested[/]", "[bold green]" + G(r.SuggestedLr) + "[/]", "the rate of the lowest smoothed loss / 10: use as --lr");
        table.AddRow("lowest loss", G(r.MinLossLr), $"smoothed loss {r.MinSmoothedLoss.ToString("F4", Inv)}");
        table.AddRow("steepest descent", G(r.SteepestLr), "where the smoothed loss falls fastest");
        _err.Write(table);
        var end = r.Diverged ? $"stopped at step {r.Points.Count}: the loss diverged" : $"all {r.Points.Count} steps ran without divergence (a larger --end-lr shows where it does)";
        _err.MarkupLine($"[grey]{Markup.Escape(end)}[/]");
        if (r.MinLossLr == r.Points[0].LearningRate)
            _err.MarkupLine("[yellow]warning:[/] the loss was lowest at the first rate; lower --start-lr");
        _err.MarkupLine($"[grey]plot[/] {Markup.Escape(plot)}");
    }

    private static string G(double lr) => lr.ToString("G3", Inv);
    private static JsonNode? Finite(double x) => double.IsFinite(x) ? x : null;
}

using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Orchestrator.Protocol.V1;
using Orchestrator.Trials;
using Spectre.Console;

namespace Orchestrator.Cli.Commands;

/// <summary>`orch metrics TRIAL`: a trial's full metric history from the coordinator, as a table, JSON lines or CSV.</summary>
internal static partial class MetricsCommand
{
    public static Command Create()
    {
        var trial = new Argument<string>("trial") { Description = "The trial's id, e.g. sw-1a2b3c4d-t0003 (see `orch trials SWEEP`)." };
        var coordinator = SweepCommands.CoordinatorOption();
        var json = CommonOptions.Json();
        var csv = new Option<bool>("--csv") { Description = "CSV with a header row: step, epoch, then one column per metric." };
        var command = new Command("metrics",
            "Every metric point a trial reported (one per epoch, keyed by the optimiser step): losses, accuracies, learning rate, throughput.\n" +
            "Example: orch metrics sw-1a2b3c4d-t0003 --csv > t0003.csv")
        { trial, coordinator, json, csv };
        command.SetAction(async (parse, ct) =>
        {
            var id = parse.GetValue(trial)!;
            var sweepId = SweepOf(id)
                ?? throw new ArgumentException($"'{id}' is not a trial id (expected SWEEP-tNNNN, e.g. sw-1a2b3c4d-t0003; see `orch trials SWEEP`)");
            using var c = SweepCommands.Connect(parse, coordinator);
            var points = (await c.Client.GetTrialMetricsAsync(new GetTrialMetricsRequest { SweepId = sweepId, TrialId = id }, c.Call(ct))).Points;
            var names = Columns(points);
            if (parse.GetValue(csv)) Console.Out.Write(Csv(points, names));
            else if (parse.GetValue(json))
            {
                foreach (var p in points)
                {
                    var line = new JsonObject { ["type"] = "metric", ["trial"] = id, ["step"] = p.Step, ["epoch"] = p.Epoch };
                    foreach (var n in names) line[n] = p.Values.TryGetValue(n, out var v) ? v : null;
                    Console.Out.WriteLine(line.ToJsonString());
                }
                Console.Out.WriteLine(new JsonObject { ["type"] = "summary", ["trial"] = id, ["points"] = points.Count }.ToJsonString());
            }
            else
            {
                // The main metrics fit a terminal; --csv and --json carry every one.
                var shown = names.Take(TableColumns).ToList();
                var table = new Table().Border(TableBorder.Simple);
                table.AddColumn(new TableColumn("step").RightAligned());
                table.AddColumn(new TableColumn("epoch").RightAligned());
                foreach (var n in shown) table.AddColumn(new TableColumn(n).RightAligned().NoWrap());
                foreach (var p in points)
                    table.AddRow([p.Step.ToString(Inv), p.Epoch.ToString(Inv), .. shown.Select(n => p.Values.TryGetValue(n, out var v) ? Format(v) : "")]);
                AnsiConsole.Write(table);
                var more = names.Count > shown.Count ? $"; {names.Count - shown.Count} more metric(s) with --csv or --json" : "";
                AnsiConsole.MarkupLine($"[grey]{points.Count} point(s) of {Markup.Escape(id)}{more}[/]");
            }
            return ExitCodes.Ok;
        });
        return command;
    }

    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>Metric columns in the table (the losses, accuracies and learning rate come first).</summary>
    private const int TableColumns = 5;

    /// <summary>The sweep of a trial id ("{sweep}-t{index}"), or null when it is not one.</summary>
    internal static string? SweepOf(string trialId) => TrialId().Match(trialId) is { Success: true } m ? m.Groups[1].Value : null;

    [GeneratedRegex(@"^(.+)-t\d{4,}$")]
    private static partial Regex TrialId();

    // The objective-like metrics first, in their usual order, then the rest by name.
    private static List<string> Columns(IEnumerable<MetricPoint> points)
    {
        var all = points.SelectMany(p => p.Values.Keys).Distinct(StringComparer.Ordinal).ToList();
        var known = new[] { MetricNames.TrainLoss, MetricNames.TrainAccuracy, MetricNames.ValLoss, MetricNames.ValAccuracy, MetricNames.ValTop5, MetricNames.LearningRate };
        return [.. known.Where(all.Contains), .. all.Except(known).Order(StringComparer.Ordinal)];
    }

    internal static string Csv(IEnumerable<MetricPoint> points, IReadOnlyList<string> names)
    {
        var sb = new StringBuilder();
        sb.Append("step,epoch");
        foreach (var n in names) sb.Append(',').Append(n);
        sb.Append('\n');
        foreach (var p in points)
        {
            sb.Append(p.Step.ToString(Inv)).Append(',').Append(p.Epoch.ToString(Inv));
            foreach (var n in names) sb.Append(',').Append(p.Values.TryGetValue(n, out var v) ? v.ToString("R", Inv) : "");
            sb.Append('\n');
        }
        return sb.ToString();
    }

    private static string Format(double v) => Math.Abs(v) is >= 1e-3 and < 1e5 or 0 ? v.ToString("0.####", Inv) : v.ToString("0.###e0", Inv);
}

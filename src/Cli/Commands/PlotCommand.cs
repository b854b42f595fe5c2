using System.CommandLine;
using System.Text.Json.Nodes;
using Orchestrator.Cli.Output;
using Orchestrator.Protocol.V1;
using Orchestrator.Sweeps;
using Spectre.Console;

namespace Orchestrator.Cli.Commands;

/// <summary>`orch plot SWEEP --out DIR`: PNG pictures of a sweep (learning curves, parallel coordinates).</summary>
internal static class PlotCommand
{
    public const string CurvesFile = "learning-curves.png";
    public const string ParallelFile = "parallel-coordinates.png";

    public static Command Create()
    {
        var sweep = SweepCommands.SweepArgument();
        var output = new Option<string>("--out")
        {
            Description = $"Folder for the pictures (created): {CurvesFile} and {ParallelFile}.",
            HelpName = "DIR",
            Required = true,
        };
        var top = new Option<int>("--top")
        {
            Description = "How many of the best trials get a learning curve.",
            HelpName = "N",
            DefaultValueFactory = _ => 5,
        };
        top.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int>() < 1) r.AddError("--top must be at least 1");
        });
        var coordinator = SweepCommands.CoordinatorOption();
        var json = CommonOptions.Json();
        var command = new Command("plot",
            "Draw a sweep as PNG pictures:\n" +
            $"  {CurvesFile}: the objective metric at every epoch of the best trials (--top N);\n" +
            $"  {ParallelFile}: one vertical axis per swept parameter (log-scaled where the sweep samples it\n" +
            "    log-uniformly, categories evenly spaced) and one for the objective; each trial is a line across them,\n" +
            "    coloured by its objective (brighter is better), the best in red.\n" +
            "Works while the sweep runs, too (trials that have reported so far).\n" +
            "Example: orch plot sw-1a2b3c4d --out plots/sw-1a2b3c4d")
        { sweep, output, top, coordinator, json };
        command.SetAction(async (parse, ct) =>
        {
            using var c = SweepCommands.Connect(parse, coordinator);
            var id = parse.GetValue(sweep)!;
            var s = await c.Client.GetSweepAsync(new GetSweepRequest { SweepId = id }, c.Call(ct));
            var trials = (await c.Client.ListTrialsAsync(new ListTrialsRequest { SweepId = id }, c.Call(ct))).Trials;
            var maximize = s.Goal != Goal.Minimize;
            var scored = trials.Where(t => t.HasBestMetric && double.IsFinite(t.BestMetric)).ToList();
            if (scored.Count == 0)
                throw new InvalidOperationException($"sweep {id} has no trial with a {s.ObjectiveMetric} value yet: nothing to plot");

            var plotted = new List<PlottedTrial>();
            foreach (var t in maximize ? scored.OrderByDescending(t => t.BestMetric) : scored.OrderBy(t => t.BestMetric))
            {
                // The curves of the top trials only: one metric call each.
                var curve = new List<(int, double)>();
                if (plotted.Count < parse.GetValue(top))
                {
                    var points = (await c.Client.GetTrialMetricsAsync(new GetTrialMetricsRequest { SweepId = id, TrialId = t.Id }, c.Call(ct))).Points;
                    foreach (var p in points.Where(p => p.Values.ContainsKey(s.ObjectiveMetric)).GroupBy(p => p.Epoch).OrderBy(g => g.Key))
                        curve.Add((p.Key, p.Last().Values[s.ObjectiveMetric]));
                }
                plotted.Add(new PlottedTrial(t, t.BestMetric, curve));
            }
            var dir = Path.GetFullPath(parse.GetValue(output)!);
            var curves = Path.Combine(dir, CurvesFile);
            var parallel = Path.Combine(dir, ParallelFile);
            var shown = plotted.Take(parse.GetValue(top)).ToList();
            SweepPlots.LearningCurves(s, shown, plotted.Count, curves);
            SweepPlots.ParallelCoordinates(s, Axes(s, plotted), plotted, maximize, parallel);

            if (parse.GetValue(json))
            {
                Console.Out.WriteLine(new JsonObject
                {
                    ["type"] = "summary", ["sweep"] = id, ["learning_curves"] = curves, ["parallel_coordinates"] = parallel,
                    ["trials"] = plotted.Count, ["curves"] = shown.Count,
                }.ToJsonString());
            }
            else
            {
                AnsiConsole.MarkupLine($"plotted {Markup.Escape(id)}: {plotted.Count} trials with a {Markup.Escape(s.ObjectiveMetric)} value");
                AnsiConsole.MarkupLine($"  {Markup.Escape(curves)}  (best {shown.Count})");
                AnsiConsole.MarkupLine($"  {Markup.Escape(parallel)}");
            }
            return ExitCodes.Ok;
        });
        return command;
    }

    /// <summary>
    /// An axis per parameter the trials vary, in the sweep file's order. The sweep file (kept by the
    /// coordinator) says which ranges are log-uniform and the order of categories; a file this
    /// version cannot read still plots, its axes' kinds read off the values.
    /// </summary>
    private static List<ParallelAxis> Axes(Sweep sweep, IReadOnlyList<PlottedTrial> trials)
    {
        Dictionary<string, SweepParameter> declared;
        try
        {
            declared = ValidatedSweep.Parse(sweep.SpecYaml, null, SweepLimits.Default).Space.Searched.ToDictionary(p => p.Path, StringComparer.Ordinal);
        }
        catch (Specs.SpecException)
        {
            declared = [];
        }
        var paths = declared.Keys.Concat(trials.SelectMany(t => t.Trial.Parameters.Keys).Order(StringComparer.Ordinal)).Distinct().ToList();
        return paths
            .Select(p => (Path: p, Seen: trials.Select(t => t.Trial.Parameters.GetValueOrDefault(p)).OfType<string>().Distinct().ToList()))
            .Where(x => x.Seen.Count > 0)
            .Select(x => ParallelAxis.For(x.Path, declared.GetValueOrDefault(x.Path), x.Seen))
            .ToList();
    }
}

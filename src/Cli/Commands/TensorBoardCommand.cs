using System.CommandLine;
using System.Text.Json.Nodes;
using Orchestrator.Cli.Export;
using Orchestrator.Cli.Remote;
using Orchestrator.Protocol.V1;
using Spectre.Console;

namespace Orchestrator.Cli.Commands;

/// <summary>`orch tensorboard SWEEP --out DIR`: a sweep's trials and metrics as a TensorBoard log folder.</summary>
internal static class TensorBoardCommand
{
    public static Command Create()
    {
        var sweep = SweepCommands.SweepArgument();
        var output = new Option<string>("--out")
        {
            Description = "Folder to write (created; a previous export there is replaced). Then: tensorboard --logdir DIR",
            HelpName = "DIR",
            Required = true,
        };
        var coordinator = SweepCommands.CoordinatorOption();
        var json = CommonOptions.Json();
        var command = new Command("tensorboard",
            "Export a sweep for TensorBoard: one run per trial with its metrics per epoch (losses, accuracies, learning rate),\n" +
            "and the hyperparameters of every trial for TensorBoard's HParams view. Works while the sweep runs, too.\n" +
            "Example: orch tensorboard sw-1a2b3c4d --out tb/sw-1a2b3c4d && tensorboard --logdir tb/sw-1a2b3c4d")
        { sweep, output, coordinator, json };
        command.SetAction(async (parse, ct) =>
        {
            using var c = SweepCommands.Connect(parse, coordinator);
            var id = parse.GetValue(sweep)!;
            var s = await c.Client.GetSweepAsync(new GetSweepRequest { SweepId = id }, c.Call(ct));
            var trials = await TrialPages.ListAllAsync(c, id, TrialState.Unspecified, ct);
            var metrics = new Dictionary<string, IReadOnlyList<MetricPoint>>(StringComparer.Ordinal);
            foreach (var t in trials)
            {
                var response = await c.Client.GetTrialMetricsAsync(new GetTrialMetricsRequest { SweepId = id, TrialId = t.Id }, c.Call(ct));
                metrics[t.Id] = response.Points;
            }
            var result = SweepTensorBoardExport.Write(s, trials, metrics, parse.GetValue(output)!);
            if (parse.GetValue(json))
            {
                Console.Out.WriteLine(new JsonObject
                {
                    ["type"] = "summary", ["sweep"] = id, ["dir"] = result.Dir, ["runs"] = result.Runs, ["points"] = result.Points,
                }.ToJsonString());
            }
            else
            {
                AnsiConsole.MarkupLine($"exported {Markup.Escape(id)}: {result.Runs} trials, {result.Points} metric reports to {Markup.Escape(result.Dir)}");
                AnsiConsole.MarkupLine($"view with: [bold]tensorboard --logdir {Markup.Escape(result.Dir)}[/] (scalars, and the HParams tab for the sweep)");
            }
            return ExitCodes.Ok;
        });
        return command;
    }
}

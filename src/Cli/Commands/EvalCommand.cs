using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Orchestrator.Data;
using Orchestrator.Worker.Data;
using Orchestrator.Trials;
using Orchestrator.Worker.Native;
using Orchestrator.Worker.Plugins;
using Orchestrator.Worker.Training;
using Spectre.Console;

namespace Orchestrator.Cli.Commands;

/// <summary>`orch eval`: accuracy, per-class accuracy and confusion matrix of a checkpoint.</summary>
internal static class EvalCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "The checkpoint to evaluate (a .ckpt written by orch train).", Required = true, HelpName = "CKPT" };
        var dataset = new Option<string?>("--dataset") { Description = "Data set to evaluate on (default: the one it was trained on).", HelpName = "NAME" };
        var dataDir = CommonOptions.DataDir();
        var limit = new Option<int?>("--limit-test") { Description = "Evaluate on a seeded subset of N images.", HelpName = "N" };
        var plugin = new Option<string?>("--plugin")
        {
            Description = "The plug-in assembly (or its folder) for a checkpoint whose model or data set came from a plug-in, " +
                          "instead of the path its trial names (a sweep submitted with orch submit names a shipped bundle:… there).",
            HelpName = "DLL",
        };
        var batch = new Option<int>("--batch-size") { Description = "Images per forward pass.", DefaultValueFactory = _ => 256, HelpName = "N" };
        var device = CommonOptions.Device();
        var libTorch = CommonOptions.LibTorchDir();
        var json = CommonOptions.Json();
        var command = new Command("eval", "Evaluate a checkpoint on a data set's validation split: loss, top-1, top-5, per-class accuracy, confusion matrix.\n" +
                                          "Example: orch eval --checkpoint runs/fashion-mnist-simple-cnn-…/best.ckpt");
        foreach (var o in new Option[] { checkpoint, dataset, dataDir, plugin, limit, batch, device, libTorch, json }) command.Add(o);

        command.SetAction((parse, ct) =>
        {
            TorchRuntime.Initialize(parse.GetValue(libTorch));
            var dev = TorchRuntime.ResolveDevice(parse.GetValue(device));
            var path = parse.GetValue(checkpoint)!;
            Func<string, string>? locate = parse.GetValue(plugin) is { } given
                ? named => Directory.Exists(given) ? Path.Combine(given, named[(named.LastIndexOf('/') + 1)..]) : given
                : null;
            var (model, header, spec) = TrainingSession.LoadModel(path, dev, locate: locate);
            using var _ = model;
            if (parse.GetValue(dataset) is { } name)
            {
                // A built-in data set named on the command line replaces a plug-in's.
                spec.Data.Name = name;
                spec.Data.Plugin = null;
                spec.Data.Args = null;
            }
            if (parse.GetValue(dataDir) is { } dir) spec.Data.Dir = dir;
            spec.Data.LimitTest = parse.GetValue(limit) ?? spec.Data.LimitTest;
            spec.Data.LimitTrain = 1; // only the validation split is needed
            using var plugins = TrialPlugins.Load(new TrialSpec { Data = spec.Data }, locate: locate);
            var data = plugins.LoadData(spec.Data, spec.Seed, null, ct);
            if (data.Info.NumClasses != header.Classes.Length)
                throw new InvalidOperationException($"{path}: the model has {header.Classes.Length} classes, data set {data.Info.Name} has {data.Info.NumClasses}");
            if (data.Info.Shape.Channels != header.InputShape[0])
                throw new InvalidOperationException($"{path}: the model takes {header.InputShape[0]}-channel images, data set {data.Info.Name} has {data.Info.Shape.Channels}");
            var a = spec.Augment;
            using var loader = new BatchLoader(data.Validation, new BatchPlan(parse.GetValue(batch), false, false, spec.Seed,
                CropSize: a.ResizeTo is null ? a.CropSize : null));
            // Normalise with the statistics the model was trained with.
            using var transform = new DeviceTransform(DeviceTransform.For(data.Info with { Mean = header.Mean, Std = header.Std }, a), dev);
            var result = Evaluator.Evaluate(model, loader, transform, data.Info.NumClasses, ct);
            Print(result, data.Info, path, parse.GetValue(json));
            return Task.FromResult(ExitCodes.Ok);
        });
        return command;
    }

    private static void Print(EvalResult r, DatasetInfo info, string checkpoint, bool json)
    {
        if (json)
        {
            var perClass = new JsonObject();
            for (var c = 0; c < info.NumClasses; c++) perClass[info.Classes[c]] = double.IsNaN(r.PerClassAccuracy[c]) ? null : r.PerClassAccuracy[c];
            var matrix = new JsonArray(r.ConfusionMatrix.Select(row => (JsonNode)new JsonArray(row.Select(v => (JsonNode)v).ToArray())).ToArray());
            Console.Out.WriteLine(new JsonObject
            {
                ["checkpoint"] = checkpoint,
                ["dataset"] = info.Name,
                ["count"] = r.Count,
                ["accuracy"] = r.Top1,
                ["top5"] = r.Top5,
                ["loss"] = r.Loss,
                ["per_class_accuracy"] = perClass,
                ["confusion_matrix"] = matrix,
            }.ToJsonString());
            return;
        }
        var inv = CultureInfo.InvariantCulture;
        var console = AnsiConsole.Console;
        console.MarkupLine($"{Markup.Escape(checkpoint)} on {Markup.Escape(info.Name)} ({r.Count:N0} images): accuracy [bold]{r.Top1.ToString("F4", inv)}[/], top-5 {r.Top5.ToString("F4", inv)}, loss {r.Loss.ToString("F4", inv)}");
        var k = info.NumClasses;
        if (k > 30)
        {
            console.MarkupLine("[grey](per-class table and confusion matrix shown for up to 30 classes; use --json for all)[/]");
            return;
        }
        var table = new Table().Border(TableBorder.Simple).Title("per-class accuracy and confusion matrix (rows: true class, columns: predicted)");
        table.AddColumn("class");
        table.AddColumn(new TableColumn("acc").RightAligned());
        for (var c = 0; c < k; c++) table.AddColumn(new TableColumn(c.ToString(inv)).RightAligned());
        for (var t = 0; t < k; t++)
        {
            var cells = new List<string> { $"{t} {Markup.Escape(info.Classes[t])}", double.IsNaN(r.PerClassAccuracy[t]) ? "-" : r.PerClassAccuracy[t].ToString("F3", inv) };
            for (var p = 0; p < k; p++)
            {
                var v = r.ConfusionMatrix[t][p].ToString(inv);
                cells.Add(p == t ? $"[bold]{v}[/]" : v);
            }
            table.AddRow(cells.ToArray());
        }
        console.Write(table);
    }
}

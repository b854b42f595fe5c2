using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Orchestrator.Worker.Export;
using Orchestrator.Worker.Native;
using Spectre.Console;

namespace Orchestrator.Cli.Commands;

/// <summary>`orch export CHECKPOINT`: a checkpoint as ONNX (optionally int8), a PyTorch state dict or safetensors.</summary>
internal static class ExportCommand
{
    public static Option<string?> FormatOption(string description) => new("--format") { Description = description, HelpName = "onnx|pytorch|safetensors" };

    public static Option<string?> QuantizeOption() => new("--quantize")
    {
        Description = "int8: post-training static quantization of the ONNX graph (QDQ: int8 weights per output channel, " +
                      "uint8 activations calibrated on training images). Needs the checkpoint's data set.",
        HelpName = "int8",
    };

    public static Option<int> CalibrationImagesOption() => new("--calibration-images")
    {
        Description = "Training images (a seeded subset) to calibrate the int8 activation ranges on.",
        DefaultValueFactory = _ => CheckpointExporter.DefaultCalibrationImages,
        HelpName = "N",
    };

    public static Command Create()
    {
        var checkpoint = new Argument<string>("checkpoint") { Description = "The checkpoint to export (a .ckpt written by orch train, or downloaded by orch best)." };
        var format = FormatOption("onnx (an ONNX graph for ONNX Runtime and other runtimes), pytorch (.pt state dict for torch.load) " +
                                  "or safetensors. Default: from --out's extension, else onnx.");
        format.AcceptOnlyFromAmong([.. CheckpointExporter.Formats]);
        var output = new Option<string?>("--out")
        {
            Description = "File to write (default: the checkpoint's name with .onnx, .int8.onnx, .pt or .safetensors).",
            HelpName = "FILE",
        };
        var quantize = QuantizeOption();
        quantize.AcceptOnlyFromAmong([.. CheckpointExporter.QuantizeModes]);
        var calibration = CalibrationImagesOption();
        var dataDir = CommonOptions.DataDir();
        var libTorch = CommonOptions.LibTorchDir();
        var json = CommonOptions.Json();
        var command = new Command("export",
            "Export a checkpoint for deployment outside orch. ONNX: opset 17, dynamic batch, input float32 NCHW pixels in [0, 1]\n" +
            "(the normalisation is inside the graph), output logits; class names and normalisation in the metadata. See docs/deployment.md.\n" +
            "Examples: orch export runs/x/best.ckpt --out model.onnx\n" +
            "          orch export runs/x/best.ckpt --out model.int8.onnx --quantize int8 --calibration-images 256\n" +
            "          orch export runs/x/best.ckpt --format pytorch --out model.pt")
        { checkpoint, format, output, quantize, calibration, dataDir, libTorch, json };
        command.SetAction((parse, ct) =>
        {
            var source = parse.GetValue(checkpoint)!;
            var q = parse.GetValue(quantize);
            var target = parse.GetValue(output);
            var fmt = parse.GetValue(format) ?? (target is null ? null : CheckpointExporter.FormatFromExtension(target)) ?? "onnx";
            target ??= DefaultOutput(source, fmt, q);
            TorchRuntime.Initialize(parse.GetValue(libTorch));
            var result = CheckpointExporter.Export(new ExportRequest(source, fmt, target, q, parse.GetValue(calibration), parse.GetValue(dataDir)), ct);
            Print(result, source, parse.GetValue(json));
            return Task.FromResult(ExitCodes.Ok);
        });
        return command;
    }

    /// <summary>best.ckpt → best.onnx, best.int8.onnx, best.pt or best.safetensors, beside the checkpoint.</summary>
    internal static string DefaultOutput(string checkpoint, string format, string? quantize) => Path.ChangeExtension(checkpoint, format switch
    {
        "onnx" => quantize is null ? ".onnx" : $".{quantize}.onnx",
        "pytorch" => ".pt",
        _ => ".safetensors",
    });

    internal static void Print(ExportResult r, string checkpoint, bool json)
    {
        if (json)
        {
            Console.Out.WriteLine(new JsonObject
            {
                ["type"] = "summary",
                ["checkpoint"] = checkpoint,
                ["path"] = r.Path,
                ["format"] = r.Format,
                ["bytes"] = r.Bytes,
                ["model"] = r.Model,
                ["classes"] = r.Classes,
                ["opset"] = r.Format == "onnx" ? OnnxModelWriter.Opset : null,
                ["quantization"] = r.Quantization,
                ["calibration_images"] = r.CalibrationImages,
            }.ToJsonString());
            return;
        }
        var size = (r.Bytes / 1e6).ToString("F1", CultureInfo.InvariantCulture);
        var what = r.Format switch
        {
            "onnx" when r.Quantization is not null => $"ONNX opset {OnnxModelWriter.Opset}, {r.Quantization} QDQ (calibrated on {r.CalibrationImages} images)",
            "onnx" => $"ONNX opset {OnnxModelWriter.Opset}, float32",
            "pytorch" => "PyTorch state dict (torch.load)",
            _ => "safetensors state dict",
        };
        AnsiConsole.MarkupLine($"exported {Markup.Escape(checkpoint)} ({Markup.Escape(r.Model)}, {r.Classes} classes) to [bold]{Markup.Escape(r.Path)}[/]: {Markup.Escape(what)}, {size} MB");
    }
}

using System.Globalization;
using Orchestrator.Data;
using Orchestrator.Trials;
using Orchestrator.Worker.Checkpoints;
using Orchestrator.Worker.Data;
using Orchestrator.Worker.Models;
using Orchestrator.Worker.Training;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace Orchestrator.Worker.Export;

/// <summary>What to export and how.</summary>
/// <param name="Checkpoint">An orch checkpoint (.ckpt).</param>
/// <param name="Format">onnx, pytorch (.pt state dict for torch.load) or safetensors.</param>
/// <param name="Output">The file to write.</param>
/// <param name="Quantize">null, or "int8" (ONNX only): static QDQ quantization.</param>
/// <param name="CalibrationImages">Training images the int8 activation ranges are calibrated on.</param>
/// <param name="DataDir">Where the checkpoint's data set is, for calibration (default: the usual search).</param>
/// <param name="SourceName">What the metadata calls the source (default: the checkpoint's file name).</param>
public sealed record ExportRequest(string Checkpoint, string Format, string Output, string? Quantize = null,
    int CalibrationImages = CheckpointExporter.DefaultCalibrationImages, string? DataDir = null, string? SourceName = null);

/// <summary>What was written.</summary>
public sealed record ExportResult(string Path, string Format, long Bytes, string Model, int Classes, string? Quantization, int? CalibrationImages);

/// <summary>
/// Converts a checkpoint to a deployment format: ONNX (optionally int8-quantized), a PyTorch state dict
/// (.pt) or safetensors. One place for <c>orch export</c> and <c>orch best --download</c>.
/// </summary>
public static class CheckpointExporter
{
    /// <summary>The formats, in help order.</summary>
    public static readonly IReadOnlyList<string> Formats = ["onnx", "pytorch", "safetensors"];

    /// <summary>The quantization modes.</summary>
    public static readonly IReadOnlyList<string> QuantizeModes = ["int8"];

    /// <summary>Calibration images when none are asked for.</summary>
    public const int DefaultCalibrationImages = 256;

    /// <summary>The format a file name suggests (.onnx, .pt/.pth, .safetensors), or null.</summary>
    public static string? FormatFromExtension(string path) => Path.GetExtension(path).ToLowerInvariant() switch
    {
        ".onnx" => "onnx",
        ".pt" or ".pth" => "pytorch",
        ".safetensors" => "safetensors",
        _ => null,
    };

    /// <summary>Loads the checkpoint and writes it in the requested format.</summary>
    /// <exception cref="ArgumentException">A bad request (unknown format, quantizing a non-ONNX export, no calibration images).</exception>
    public static ExportResult Export(ExportRequest request, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (!Formats.Contains(request.Format))
            throw new ArgumentException($"unknown export format '{request.Format}': {KnownNames.OneOf(Formats)}");
        if (request.Quantize is { } q)
        {
            if (!QuantizeModes.Contains(q)) throw new ArgumentException($"unknown quantization '{q}': {KnownNames.OneOf(QuantizeModes)}");
            if (request.Format != "onnx") throw new ArgumentException($"--quantize {q} needs --format onnx (the {request.Format} format holds float weights)");
            if (request.CalibrationImages < 1)
                throw new ArgumentException($"--calibration-images must be at least 1 (got {request.CalibrationImages}): int8 quantization calibrates on training images");
        }
        var output = Path.GetFullPath(request.Output);
        CheckWritable(output);

        // A downloaded copy is called what it is to the user (the trial's checkpoint), not by its temporary name.
        var (model, header, spec) = TrainingSession.LoadModel(request.Checkpoint, CPU,
            request.SourceName is null ? null : "the checkpoint of " + request.SourceName);
        using (model)
        {
            int? calibrated = null;
            switch (request.Format)
            {
                case "pytorch":
                    Write(output, tmp => model.save_py(tmp));
                    break;
                case "safetensors":
                    Write(output, tmp => model.save_safetensors(tmp));
                    break;
                default:
                {
                    using var graph = BuildGraph(model, header, spec);
                    var metadata = Metadata(header, spec, request.SourceName ?? Path.GetFileName(request.Checkpoint));
                    Onnx.ModelProto proto;
                    if (request.Quantize is null)
                    {
                        proto = OnnxModelWriter.Build(graph, metadata);
                    }
                    else
                    {
                        var calibration = CalibrateOnTrainingImages(graph, header, spec, request.CalibrationImages, request.DataDir, ct);
                        calibrated = calibration.Images;
                        proto = OnnxModelWriter.Quantize(graph, metadata, calibration);
                    }
                    OnnxModelWriter.Save(proto, output);
                    break;
                }
            }
            return new ExportResult(output, request.Format, new FileInfo(output).Length, header.Model, header.Classes.Length, request.Quantize, calibrated);
        }
    }

    /// <summary>The eval-mode graph of a checkpoint's model, with the normalisation it was trained with folded in (when it used one).</summary>
    public static InferenceGraph BuildGraph(ImageClassifier model, CheckpointHeader header, TrialSpec spec)
    {
        ArgumentNullException.ThrowIfNull(header);
        ArgumentNullException.ThrowIfNull(spec);
        var input = new ImageShape(header.InputShape[0], header.InputShape[1], header.InputShape[2]);
        return spec.Augment.Normalize
            ? InferenceGraphBuilder.Build(model, input, header.Mean, header.Std)
            : InferenceGraphBuilder.Build(model, input, null, null);
    }

    /// <summary>The metadata of a checkpoint's export: classes, data set, preprocessing, trial facts.</summary>
    /// <param name="source">The checkpoint's name, for the <c>checkpoint</c> key.</param>
    public static OnnxMetadata Metadata(CheckpointHeader header, TrialSpec spec, string source)
    {
        ArgumentNullException.ThrowIfNull(header);
        ArgumentNullException.ThrowIfNull(spec);
        var a = spec.Augment;
        var side = header.InputShape[1];
        var preprocessing = a.ResizeTo is { } resize
            ? $"resize the shorter side to {resize} px (bilinear), then center-crop {side}x{side}"
            : a.CropSize is { } crop ? $"center-crop (or resize) to {crop}x{crop}" : null;
        var inv = CultureInfo.InvariantCulture;
        var extra = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["checkpoint"] = source,
            ["epochs"] = header.EpochsCompleted.ToString(inv),
            ["best_val_accuracy"] = header.BestValAccuracy.ToString("R", inv),
            ["trial"] = header.TrialYaml,
        };
        if (spec.Model.Stem is { } stem) extra["stem"] = stem;
        return new OnnxMetadata(header.Classes, header.Dataset, preprocessing, extra);
    }

    /// <summary>
    /// Calibrates on <paramref name="images"/> images of the checkpoint's training split (a seeded subset),
    /// prepared as evaluation prepares them (no augmentation), as the graph takes them.
    /// </summary>
    public static CalibrationResult CalibrateOnTrainingImages(InferenceGraph graph, CheckpointHeader header, TrialSpec spec,
        int images, string? dataDir, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(graph);
        ArgumentNullException.ThrowIfNull(header);
        ArgumentNullException.ThrowIfNull(spec);
        if (images < 1) throw new ArgumentException($"--calibration-images must be at least 1 (got {images})");
        spec.Data.LimitTrain = images;
        spec.Data.LimitTest = 1;
        if (dataDir is not null) spec.Data.Dir = dataDir;
        var data = DatasetLoader.Load(spec.Data, spec.Seed, null, ct);
        if (data.Info.Shape.Channels != graph.Input.Channels)
            throw new InvalidOperationException($"the model takes {graph.Input.Channels}-channel images, data set {data.Info.Name} has {data.Info.Shape.Channels}");
        return Calibrator.Calibrate(graph, Batches(data, header, spec, ct), $"{data.Info.Name}/train");
    }

    /// <summary>Graph inputs (unnormalised when the graph normalises) of a split, in batches of 64.</summary>
    private static IEnumerable<Tensor> Batches(DatasetSplits data, CheckpointHeader header, TrialSpec spec, CancellationToken ct)
    {
        var a = spec.Augment;
        using var loader = new BatchLoader(data.Train, new BatchPlan(64, false, false, spec.Seed, CropSize: a.ResizeTo is null ? a.CropSize : null));
        // The graph normalises (Sub/Div) itself: the transform stops at [0, 1] pixels.
        var augment = DeviceTransform.For(data.Info with { Mean = header.Mean, Std = header.Std }, a) with { Normalize = false };
        using var transform = new DeviceTransform(augment, CPU);
        foreach (var batch in loader.Epoch(0, ct))
        {
            var (x, y) = transform.Apply(batch, train: false);
            loader.Return(batch);
            y.Dispose();
            using (x) yield return x;
        }
    }

    /// <summary>Fails early, with the path in the message, when the output's folder cannot take a file.</summary>
    private static void CheckWritable(string output)
    {
        var dir = Path.GetDirectoryName(output) ?? ".";
        if (Directory.Exists(output)) throw new IOException($"cannot write {output}: it is a directory");
        if (!Directory.Exists(dir))
            throw new DirectoryNotFoundException($"cannot write {output}: {(File.Exists(dir) ? $"{dir} is a file, not a folder" : $"no folder {dir}")}");
    }

    private static void Write(string output, Action<string> write)
    {
        // Through a temp file in the same folder, so a failed export never leaves half a file behind.
        var tmp = Path.Combine(Path.GetDirectoryName(output)!, $".{Path.GetFileName(output)}.{Environment.ProcessId}.tmp");
        try
        {
            write(tmp);
            File.Move(tmp, output, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"cannot write {output}: {e.Message}", e);
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }
}

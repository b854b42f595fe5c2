using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using Orchestrator.Data;
using Orchestrator.TestSupport;
using Orchestrator.Trials;
using Orchestrator.Worker.Checkpoints;
using Xunit.Abstractions;

namespace Orchestrator.Cli.FunctionalTests;

/// <summary>`orch export` on a checkpoint trained briefly on Fashion-MNIST: every format, int8 accuracy, and the errors a user can make.</summary>
public sealed class ExportTests(FashionRun run, ITestOutputHelper output) : IClassFixture<FashionRun>
{
    private string Checkpoint => Path.Combine(run.Dir, run.Train.LastJson.GetProperty("checkpoint").GetString()!);

    private OrchProcess.Result Export(params string[] args) => OrchProcess.Run(run.Dir, ["export", Checkpoint, .. args]);

    [Fact]
    public void Export_writes_onnx_pytorch_and_safetensors_beside_the_checkpoint_by_default()
    {
        Assert.True(run.Train.ExitCode == 0, run.Train.ToString());
        foreach (var (format, extension, magic) in new[] { ("onnx", ".onnx", (byte)0x08), ("pytorch", ".pt", (byte)'P'), ("safetensors", ".safetensors", (byte)0) })
        {
            var r = Export("--format", format, "--json");
            Assert.True(r.ExitCode == 0, r.ToString());
            var summary = r.LastJson;
            var path = summary.GetProperty("path").GetString()!;
            Assert.Equal(Path.ChangeExtension(Checkpoint, extension), path);
            Assert.Equal(format, summary.GetProperty("format").GetString());
            Assert.Equal("simple-cnn", summary.GetProperty("model").GetString());
            Assert.Equal(10, summary.GetProperty("classes").GetInt32());
            Assert.Equal(new FileInfo(path).Length, summary.GetProperty("bytes").GetInt64());
            // ONNX: a protobuf starting with ir_version (field 1, varint); .pt: a zip ("PK"); safetensors: a little-endian u64 header length.
            Assert.Equal(magic, File.ReadAllBytes(path)[format == "safetensors" ? 7 : 0]);
        }
        // The format follows --out's extension, and people get one line.
        var human = Export("--out", "named.onnx");
        Assert.True(human.ExitCode == 0, human.ToString());
        Assert.Contains("ONNX opset 17", human.StdOut);
        Assert.True(File.Exists(Path.Combine(run.Dir, "named.onnx")));
    }

    [Fact]
    public void Int8_quantization_on_fashion_mnist_loses_at_most_one_point_of_accuracy()
    {
        var fp32 = Export("--out", "fp32.onnx", "--json");
        Assert.True(fp32.ExitCode == 0, fp32.ToString());
        var int8 = Export("--out", "int8.onnx", "--quantize", "int8", "--calibration-images", "256", "--json");
        Assert.True(int8.ExitCode == 0, int8.ToString());
        Assert.Equal("int8", int8.LastJson.GetProperty("quantization").GetString());
        Assert.Equal(256, int8.LastJson.GetProperty("calibration_images").GetInt32());

        // All 10,000 test images, through ONNX Runtime on the CPU.
        var test = DatasetLoader.Load(new DataSpec { Name = "fashion-mnist", Download = false }, 0, null, CancellationToken.None).Validation;
        var fp32Accuracy = Accuracy(Path.Combine(run.Dir, "fp32.onnx"), test);
        var int8Accuracy = Accuracy(Path.Combine(run.Dir, "int8.onnx"), test);
        output.WriteLine($"Fashion-MNIST test set ({test.Count:N0} images): float32 {fp32Accuracy:F4}, int8 {int8Accuracy:F4}, drop {100 * (fp32Accuracy - int8Accuracy):F2} points");
        Assert.True(fp32Accuracy > 0.75, $"float32 accuracy {fp32Accuracy}");
        Assert.True(fp32Accuracy - int8Accuracy <= 0.01, $"int8 accuracy {int8Accuracy:F4} against float32 {fp32Accuracy:F4}: more than one point lost");
        Assert.True(new FileInfo(Path.Combine(run.Dir, "int8.onnx")).Length * 3.5 < new FileInfo(Path.Combine(run.Dir, "fp32.onnx")).Length);

        // The float graph reproduces orch's own evaluation on the run's 500 test images.
        var subset = DatasetSlicing.Take(test, 500);
        Assert.Equal(run.Train.LastJson.GetProperty("test_accuracy").GetDouble(), Accuracy(Path.Combine(run.Dir, "fp32.onnx"), subset), 6);
    }

    private static double Accuracy(string model, IImageDataset data)
    {
        using var options = new SessionOptions { IntraOpNumThreads = 2 };
        using var session = new InferenceSession(model, options);
        var classes = JsonSerializer.Deserialize<string[]>(session.ModelMetadata.CustomMetadataMap["classes"])!;
        var s = data.Shape;
        var correct = 0;
        const int batch = 500;
        var pixels = new byte[s.Size];
        for (var start = 0; start < data.Count; start += batch)
        {
            var n = Math.Min(batch, data.Count - start);
            var input = new float[n * s.Size];
            for (var i = 0; i < n; i++)
            {
                data.CopyImage(start + i, pixels);
                for (var j = 0; j < s.Size; j++) input[i * s.Size + j] = pixels[j] / 255f;  // the graph normalises
            }
            using var value = OrtValue.CreateTensorValueFromMemory(input, [n, s.Channels, s.Height, s.Width]);
            using var runOptions = new RunOptions();
            using var outputs = session.Run(runOptions, ["input"], [value], ["logits"]);
            var logits = outputs[0].GetTensorDataAsSpan<float>();
            for (var i = 0; i < n; i++)
            {
                var row = logits.Slice(i * classes.Length, classes.Length);
                var best = 0;
                for (var k = 1; k < row.Length; k++) if (row[k] > row[best]) best = k;
                if (best == data.GetLabel(start + i)) correct++;
            }
        }
        return (double)correct / data.Count;
    }

    [Fact]
    public void A_corrupt_checkpoint_is_one_line()
    {
        var bad = Path.Combine(run.Dir, "corrupt.ckpt");
        var bytes = File.ReadAllBytes(Checkpoint);
        bytes[bytes.Length / 2] ^= 0xFF;
        File.WriteAllBytes(bad, bytes);
        var line = OrchProcess.AssertOneLineError(OrchProcess.Run(run.Dir, "export", bad, "--out", "x.onnx"), 1);
        Assert.Contains("checksum mismatch", line);
        Assert.False(File.Exists(Path.Combine(run.Dir, "x.onnx")));
        line = OrchProcess.AssertOneLineError(OrchProcess.Run(run.Dir, "export", "missing.ckpt"), 1);
        Assert.Contains("no such checkpoint", line);
    }

    [Fact]
    public void A_checkpoint_of_an_unknown_model_is_one_line()
    {
        var (header, sections) = CheckpointFile.Read(Checkpoint);
        var bad = Path.Combine(run.Dir, "vgg.ckpt");
        CheckpointFile.Write(bad, header with { Model = "vgg16", TrialYaml = header.TrialYaml.Replace("name: simple-cnn", "name: vgg16", StringComparison.Ordinal) }, sections);
        // A checkpoint is data, not the command line: a failed run (1), naming the file.
        var line = OrchProcess.AssertOneLineError(OrchProcess.Run(run.Dir, "export", bad, "--out", "vgg.onnx"), 1);
        Assert.Contains("unknown model 'vgg16'", line);
        Assert.Contains("vgg.ckpt", line);
    }

    [Fact]
    public void A_checkpoint_wrong_inside_with_a_valid_checksum_is_one_line_naming_it_in_export_eval_and_resume()
    {
        var (header, sections) = CheckpointFile.Read(Checkpoint);
        // The header's JSON as written: after the magic, the version and its u32 length.
        var raw = File.ReadAllBytes(Checkpoint);
        var json = raw[16..(16 + (int)System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(raw.AsSpan(12)))];
        var all = sections.Select(kv => (kv.Key, kv.Value)).ToArray();
        var cases = new (string File, string Expected, Action<string> Write)[]
        {
            ("not-json.ckpt", "header is not valid JSON", p => CraftedCheckpoint.Write(p, "{ this is not json"u8.ToArray(), all)),
            ("huge-header.ckpt", "header length 4294967295 exceeds the file size", p => CraftedCheckpoint.Write(p, json, all, headerLength: uint.MaxValue)),
            ("no-model.ckpt", "missing the 'model' section", p => CraftedCheckpoint.Write(p, json, all.Where(s => s.Key != "model"))),
            ("other-model.ckpt", "the model section does not hold resnet18 weights", p => CheckpointFile.Write(p, header with
            {
                Model = "resnet18", TrialYaml = header.TrialYaml.Replace("name: simple-cnn", "name: resnet18", StringComparison.Ordinal),
            }, sections)),
            ("wrong-shape.ckpt", "the model section does not hold simple-cnn weights for 11 classes", p => CheckpointFile.Write(p, header with { Classes = [.. header.Classes, "extra"] }, sections)),
        };
        foreach (var (file, expected, write) in cases)
        {
            var path = Path.Combine(run.Dir, file);
            write(path);
            var line = OrchProcess.AssertOneLineError(OrchProcess.Run(run.Dir, "export", path, "--out", file + ".onnx"), 1);
            Assert.Contains($"{path}: {expected}", line);
            Assert.False(File.Exists(Path.Combine(run.Dir, file + ".onnx")));
            line = OrchProcess.AssertOneLineError(OrchProcess.Run(run.Dir, "eval", "--checkpoint", path), 1);
            Assert.Contains($"{path}: {expected}", line);
            if (file is "not-json.ckpt" or "other-model.ckpt" or "wrong-shape.ckpt")
            {
                // Resuming builds the model for the data set (after its "data ..." line): a header of
                // another class count is named before any weights are read.
                line = OrchProcess.AssertErrorAfterProgress(OrchProcess.Run(run.Dir, "train", "--resume", path, "--epochs", "2"), 1);
                Assert.Contains(file == "wrong-shape.ckpt" ? $"{path}: its header lists 11 classes, data set fashion-mnist has 10" : $"{path}: {expected}", line);
            }
        }
    }

    [Fact]
    public void An_unwritable_output_is_one_line_naming_it()
    {
        File.WriteAllText(Path.Combine(run.Dir, "a-file"), "");
        var line = OrchProcess.AssertOneLineError(Export("--out", "a-file/model.onnx"), 1);
        Assert.Contains("cannot write", line);
        Assert.Contains("a-file", line);
        line = OrchProcess.AssertOneLineError(Export("--out", "no/such/folder/model.pt"), 1);
        Assert.Contains("cannot write", line);
        line = OrchProcess.AssertOneLineError(Export("--out", "/proc/model.onnx"), 1);
        Assert.Contains("cannot write /proc/model.onnx", line);
    }

    [Fact]
    public void Quantizing_with_an_empty_calibration_set_or_a_float_format_is_one_line()
    {
        var line = OrchProcess.AssertOneLineError(Export("--quantize", "int8", "--calibration-images", "0"), 2);
        Assert.Contains("--calibration-images must be at least 1", line);
        line = OrchProcess.AssertOneLineError(Export("--quantize", "int8", "--format", "pytorch"), 2);
        Assert.Contains("needs --format onnx", line);
        line = OrchProcess.AssertOneLineError(Export("--quantize", "int4"), 2);
        Assert.Contains("int4", line);
    }
}

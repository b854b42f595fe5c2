using System.Collections;
using Orchestrator.Data;
using Orchestrator.Trials;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace Orchestrator.Worker.Models;

/// <summary>
/// What <see cref="PretrainedWeights.Load"/> did. <see cref="Loaded"/>: model entries (parameters and
/// buffers) now holding the file's values. <see cref="Skipped"/>: file entries not loaded (a head for a
/// different class count, a stem conv of another kernel size, names the model does not have).
/// </summary>
public sealed record PretrainedLoadReport(IReadOnlyList<string> Loaded, IReadOnlyList<string> Skipped)
{
    /// <summary>Loaded entries whose values were adapted, e.g. a 3-channel conv1 summed into a 1-channel one.</summary>
    public IReadOnlyList<string> Adapted { get; init; } = [];

    /// <summary>Model entries the file did not provide; they keep their fresh initialisation.</summary>
    public IReadOnlyList<string> Missing { get; init; } = [];
}

/// <summary>Loads pretrained weights (TorchSharp, PyTorch state dict or safetensors) for transfer learning.</summary>
public static class PretrainedWeights
{
    // A TorchSharp file that claims more entries than this is not a model state dict.
    private const long MaxEntries = 1_000_000;
    private const int MaxRank = 8;

    /// <summary>
    /// Loads weights into model per spec (format auto = by extension: .pt/.pth/.bin -> pytorch, .safetensors -> safetensors, else torchsharp),
    /// skipping the classifier head when its shape differs (class count changed), then FreezeBackbone if asked.
    /// Returns which parameter names were loaded and which were skipped. Errors (missing file, wrong format, no matching parameters) -> InvalidDataException with the file name and the problem.
    /// </summary>
    /// <remarks>
    /// A first conv whose input channels differ from the file's (3-channel weights into a grey-scale model)
    /// is adapted rather than refused: summed over channels for one input channel, otherwise tiled and
    /// rescaled so activations keep their magnitude; it is listed in <see cref="PretrainedLoadReport.Adapted"/>.
    /// A shape mismatch anywhere else in the backbone means weights of another architecture and is an error.
    /// </remarks>
    public static PretrainedLoadReport Load(ImageClassifier model, PretrainedSpec spec)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(spec);
        var path = spec.Path;
        if (string.IsNullOrWhiteSpace(path))
            throw new InvalidDataException("pretrained weights: no file given (pretrained.path is empty)");
        if (!File.Exists(path))
            throw new InvalidDataException($"{path}: pretrained weights file not found");
        var format = ResolveFormat(spec.Format, path);
        return ApplyAndFree(model, Read(path, format), path, format, spec.FreezeBackbone);
    }

    /// <summary>
    /// Loads weights in TorchSharp's format held in memory (an orch checkpoint's model section), as
    /// <see cref="Load"/> does a file; errors name <paramref name="name"/>, the file the user gave.
    /// </summary>
    public static PretrainedLoadReport LoadTorchSharp(ImageClassifier model, byte[] weights, string name, bool freezeBackbone)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(weights);
        using var stream = new MemoryStream(weights, writable: false);
        return ApplyAndFree(model, Read(name, "torchsharp", () => ReadTorchSharp(stream, name)), name, "torchsharp", freezeBackbone);
    }

    private static PretrainedLoadReport ApplyAndFree(ImageClassifier model, Dictionary<string, Tensor> source, string path, string format, bool freezeBackbone)
    {
        try
        {
            var report = Apply(model, source, path, format);
            if (freezeBackbone) model.FreezeBackbone();
            return report;
        }
        finally
        {
            foreach (var tensor in source.Values) tensor.Dispose();
        }
    }

    /// <summary>The concrete format for a spec's format field: auto picks by file extension.</summary>
    public static string ResolveFormat(string format, string path) => format switch
    {
        "torchsharp" or "pytorch" or "safetensors" => format,
        "auto" or "" => Path.GetExtension(path).ToLowerInvariant() switch
        {
            ".pt" or ".pth" or ".bin" => "pytorch",
            ".safetensors" => "safetensors",
            _ => "torchsharp",
        },
        _ => throw new InvalidDataException($"{path}: unknown weights format '{format}': {KnownNames.OneOf(KnownNames.WeightFormats)}"),
    };

    private static Dictionary<string, Tensor> Read(string path, string format) => Read(path, format, () => format switch
    {
        "pytorch" => ReadPyTorch(path),
        "safetensors" => Safetensors.LoadStateDict(path),
        _ => ReadTorchSharp(path),
    });

    private static Dictionary<string, Tensor> Read(string path, string format, Func<Dictionary<string, Tensor>> read)
    {
        try
        {
            return read();
        }
        catch (InvalidDataException e) when (e.Message.StartsWith(path, StringComparison.Ordinal))
        {
            throw;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // The readers fail in many ways on a foreign or damaged file (pickle errors, JSON errors,
            // end of stream, native errors); the user needs the file, the format tried and the cause.
            // The cause may quote the file's bytes: printable only.
            throw new InvalidDataException($"{path}: not a readable {format} weights file ({e.GetType().Name}: {QuotedText.Printable(e.Message)})", e);
        }
    }

    private static Dictionary<string, Tensor> ReadPyTorch(string path)
    {
        var root = PyTorchUnpickler.UnpickleStateDict(path);
        // Training scripts often save {"state_dict": ..., "epoch": ...} or {"model": ...}: unwrap that.
        IDictionary dict = root;
        foreach (var key in new[] { "state_dict", "model_state_dict", "model" })
        {
            if (root[key] is IDictionary inner)
            {
                dict = inner;
                break;
            }
        }
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (DictionaryEntry entry in dict)
        {
            if (entry.Key is string name && entry.Value is Tensor tensor) result[name] = tensor;
        }
        return result;
    }

    /// <summary>
    /// Reads a file written by <c>Module.save</c>: an LEB128 entry count, then per entry a name and a tensor
    /// (LEB128 dtype, rank, dims, raw bytes). Read here rather than through <c>Module.load</c> so the file's
    /// shapes are known before anything is copied, and so a garbage header cannot ask for a huge allocation.
    /// </summary>
    private static Dictionary<string, Tensor> ReadTorchSharp(string path)
    {
        using var stream = File.OpenRead(path);
        return ReadTorchSharp(stream, path);
    }

    private static Dictionary<string, Tensor> ReadTorchSharp(Stream stream, string path)
    {
        using var reader = new BinaryReader(stream, System.Text.Encoding.UTF8, leaveOpen: true);
        var count = DecodeLeb128(reader);
        if (count is < 1 or > MaxEntries)
            throw new InvalidDataException($"{path}: not a TorchSharp weights file (header claims {count} entries)");
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            for (long i = 0; i < count; i++)
            {
                var name = reader.ReadString();
                var dtype = (ScalarType)DecodeLeb128(reader);
                if (!Enum.IsDefined(dtype))
                    throw new InvalidDataException($"{path}: entry '{QuotedText.Printable(name, 48)}' has unknown element type {(int)dtype} (at byte offset {stream.Position})");
                var rank = DecodeLeb128(reader);
                if (rank is < 0 or > MaxRank)
                    throw new InvalidDataException($"{path}: entry '{QuotedText.Printable(name, 48)}' has rank {rank} (at byte offset {stream.Position})");
                var shape = new long[rank];
                long elements = 1;
                for (var d = 0; d < rank; d++)
                {
                    shape[d] = DecodeLeb128(reader);
                    if (shape[d] < 0 || shape[d] > stream.Length)
                        throw new InvalidDataException($"{path}: entry '{QuotedText.Printable(name, 48)}' has dimension {shape[d]} (at byte offset {stream.Position})");
                    elements *= shape[d];
                }
                var tensor = torch.empty(shape, dtype);
                result[name] = tensor;
                var bytes = elements * tensor.ElementSize;
                if (bytes > stream.Length - stream.Position)
                    throw new InvalidDataException($"{path}: truncated: entry '{QuotedText.Printable(name, 48)}' needs {bytes} bytes, {stream.Length - stream.Position} remain");
                tensor.bytes = reader.ReadBytes(checked((int)bytes));
            }
            if (stream.Position != stream.Length)
                throw new InvalidDataException($"{path}: {stream.Length - stream.Position} unexpected bytes after the last entry");
            return result;
        }
        catch
        {
            foreach (var tensor in result.Values) tensor.Dispose();
            throw;
        }
    }

    /// <summary>TorchSharp's LEB128 integer (7 bits a byte, low first); its own codec is internal.</summary>
    private static long DecodeLeb128(BinaryReader reader)
    {
        long value = 0;
        for (var shift = 0; shift < 64; shift += 7)
        {
            var b = reader.ReadByte();
            value |= (long)(b & 0x7F) << shift;
            if ((b & 0x80) == 0) return value;
        }
        throw new InvalidDataException("an integer in the header runs past 64 bits");
    }

    private static PretrainedLoadReport Apply(ImageClassifier model, Dictionary<string, Tensor> source, string path, string format)
    {
        // DataParallel checkpoints prefix every name with "module.".
        const string parallelPrefix = "module.";
        if (source.Count > 0 && source.Keys.All(k => k.StartsWith(parallelPrefix, StringComparison.Ordinal)))
            source = source.ToDictionary(kv => kv.Key[parallelPrefix.Length..], kv => kv.Value, StringComparer.Ordinal);

        var target = model.state_dict();
        var loaded = new List<string>();
        var skipped = new List<string>();
        var adapted = new List<string>();
        using (torch.no_grad())
        {
            foreach (var (name, value) in source)
            {
                if (!target.TryGetValue(name, out var destination))
                {
                    skipped.Add(QuotedText.Printable(name));
                    continue;
                }
                if (value.shape.SequenceEqual(destination.shape))
                {
                    CopyInto(destination, value);
                    loaded.Add(name);
                }
                else if (model.IsHeadName(name))
                {
                    // The class count changed: the fresh head stays.
                    skipped.Add(QuotedText.Printable(name));
                }
                else if (name == ImageClassifier.InputConvName && TryAdaptInputConv(value, destination))
                {
                    loaded.Add(name);
                    adapted.Add(name);
                }
                else if (name == ImageClassifier.InputConvName)
                {
                    // Another stem (a 7×7 ImageNet conv into a 3×3 CIFAR stem): the stem is trained from scratch.
                    skipped.Add(QuotedText.Printable(name));
                }
                else
                {
                    throw new InvalidDataException(
                        $"{path}: '{QuotedText.Printable(name)}' is {Shape(value)} in the file but {Shape(destination)} in {model.GetName()}: weights for another architecture?");
                }
            }
        }

        if (loaded.Count == 0)
        {
            throw new InvalidDataException(
                $"{path}: no {format} entry matches a parameter of {model.GetName()} (file has {Sample(source.Keys)}; model expects {Sample(target.Keys)})");
        }
        var missing = target.Keys.Where(k => !loaded.Contains(k)).ToList();
        return new PretrainedLoadReport(loaded, skipped) { Adapted = adapted, Missing = missing };
    }

    private static void CopyInto(Tensor destination, Tensor value)
    {
        using var converted = value.to(destination.dtype, destination.device);
        destination.copy_(converted);
    }

    /// <summary>
    /// Fits [out, c_file, k, k] conv weights to [out, c_model, k, k]. One model channel gets the sum over the
    /// file's channels (a grey image is the sum of equal RGB planes); more get the file's channels tiled
    /// and scaled by c_file/c_model so the response to a uniform input is unchanged.
    /// </summary>
    private static bool TryAdaptInputConv(Tensor value, Tensor destination)
    {
        if (value.dim() != 4 || destination.dim() != 4) return false;
        if (value.shape[0] != destination.shape[0] || value.shape[2] != destination.shape[2] || value.shape[3] != destination.shape[3])
            return false;
        var fileChannels = value.shape[1];
        var modelChannels = destination.shape[1];
        using var scope = torch.NewDisposeScope();
        Tensor fitted;
        if (modelChannels == 1)
        {
            fitted = value.sum(1, keepdim: true);
        }
        else
        {
            var repeats = (modelChannels + fileChannels - 1) / fileChannels;
            fitted = value.repeat(1, repeats, 1, 1)[.., ..(int)modelChannels].mul((double)fileChannels / modelChannels);
        }
        CopyInto(destination, fitted);
        return true;
    }

    private static string Shape(Tensor t) => "[" + string.Join(", ", t.shape) + "]";

    private static string Sample(IEnumerable<string> names)
    {
        var list = names.Take(4).Select(n => "'" + QuotedText.Printable(n, 64) + "'").ToList();
        return list.Count == 0 ? "no tensors" : string.Join(", ", list) + ", ...";
    }
}

using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Orchestrator.Worker.Training;

namespace Orchestrator.Worker.Checkpoints;

/// <summary>Everything about a checkpoint except the tensors.</summary>
public sealed record CheckpointHeader(
    int FormatVersion,
    string TrialYaml,
    string Model,
    string Dataset,
    int[] InputShape,
    string[] Classes,
    float[] Mean,
    float[] Std,
    int EpochsCompleted,
    long GlobalStep,
    double BestValAccuracy,
    int BestEpoch,
    PlateauState Plateau,
    List<EpochMetrics> History,
    DateTimeOffset SavedAt);

/// <summary>
/// The checkpoint file: one self-checking file, written atomically (temp file + rename).
/// <code>
/// "ORCHCKPT" | u32 version | u32 header length | header (UTF-8 JSON)
/// sections: u16 name length | name | u64 length | bytes      (model, optimizer, rng[, pruning])
/// u32 0xFFFF end marker | SHA-256 of everything before it (32 bytes)
/// </code>
/// Model and optimizer sections hold TorchSharp's own state-dict format; rng is the CPU generator state;
/// pruning (only in a pruned trial) holds one mask bit per conv/linear weight (see MagnitudePruner.Save).
/// </summary>
public static partial class CheckpointFile
{
    public const int FormatVersion = 1;

    /// <summary>The model's weights (TorchSharp's <c>Module.save</c> format).</summary>
    public const string ModelSection = "model";

    /// <summary>The optimizer's state (TorchSharp's <c>save_state_dict</c> format).</summary>
    public const string OptimizerSection = "optimizer";

    /// <summary>The CPU random generator's state.</summary>
    public const string RngSection = "rng";

    /// <summary>The pruning masks, only in a pruned trial.</summary>
    public const string PruningSection = "pruning";

    /// <summary>fp16's dynamic loss scale (<c>trial.precision: fp16</c>), only in such a trial.</summary>
    public const string LossScaleSection = "loss-scale";

    private static readonly byte[] Magic = "ORCHCKPT"u8.ToArray();
    private const ushort EndMarker = 0xFFFF;
    private const int HashLength = 32;

    public static void Write(string path, CheckpointHeader header, IReadOnlyDictionary<string, byte[]> sections)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(dir);
        var tmp = Path.Combine(dir, $".{Path.GetFileName(path)}.{Environment.ProcessId}.tmp");
        using (var file = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
        using (var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256))
        {
            void Put(ReadOnlySpan<byte> bytes)
            {
                file.Write(bytes);
                sha.AppendData(bytes);
            }
            Span<byte> num = stackalloc byte[8];
            Put(Magic);
            BinaryPrimitives.WriteUInt32LittleEndian(num, FormatVersion);
            Put(num[..4]);
            var json = JsonSerializer.SerializeToUtf8Bytes(header, CheckpointJson.Default.CheckpointHeader);
            BinaryPrimitives.WriteUInt32LittleEndian(num, (uint)json.Length);
            Put(num[..4]);
            Put(json);
            foreach (var (name, bytes) in sections)
            {
                var nameBytes = Encoding.UTF8.GetBytes(name);
                BinaryPrimitives.WriteUInt16LittleEndian(num, (ushort)nameBytes.Length);
                Put(num[..2]);
                Put(nameBytes);
                BinaryPrimitives.WriteUInt64LittleEndian(num, (ulong)bytes.Length);
                Put(num);
                Put(bytes);
            }
            BinaryPrimitives.WriteUInt16LittleEndian(num, EndMarker);
            Put(num[..2]);
            file.Write(sha.GetHashAndReset());
            file.Flush(flushToDisk: true);
        }
        File.Move(tmp, path, overwrite: true);
    }

    /// <summary>True when the file starts with the checkpoint magic (cheap: reads 8 bytes).</summary>
    public static bool LooksLikeCheckpoint(string path)
    {
        if (!File.Exists(path)) return false;
        Span<byte> head = stackalloc byte[8];
        using var f = File.OpenRead(path);
        return f.ReadAtLeast(head, 8, throwOnEndOfStream: false) == 8 && head.SequenceEqual(Magic);
    }

}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals)]
[JsonSerializable(typeof(CheckpointHeader))]
internal sealed partial class CheckpointJson : JsonSerializerContext;

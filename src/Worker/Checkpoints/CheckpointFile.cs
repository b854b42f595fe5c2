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
public static class CheckpointFile
{
    public const int FormatVersion = 1;
    private static readonly byte[] Magic = "ORCHCKPT"u8.ToArray();
    private const ushort EndMarker = 0xFFFF;

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

    /// <summary>Reads and verifies a checkpoint; a damaged file is an <see cref="InvalidDataException"/> naming it and the problem.</summary>
    public static (CheckpointHeader Header, Dictionary<string, byte[]> Sections) Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such checkpoint", path);
        var data = File.ReadAllBytes(path);
        InvalidDataException Bad(string problem, long offset) => new($"{path}: {problem} (at byte offset {offset})");
        if (data.Length < Magic.Length + 8 + 2 + 32 || !data.AsSpan(0, Magic.Length).SequenceEqual(Magic))
            throw Bad("not an Orchestrator checkpoint (bad magic)", 0);
        var body = data.AsSpan(0, data.Length - 32);
        if (!SHA256.HashData(body).AsSpan().SequenceEqual(data.AsSpan(data.Length - 32)))
            throw Bad("checksum mismatch: the file is truncated or corrupt", data.Length - 32);
        var pos = Magic.Length;
        var version = BinaryPrimitives.ReadUInt32LittleEndian(data.AsSpan(pos));
        if (version != FormatVersion) throw Bad($"unsupported checkpoint version {version}", pos);
        pos += 4;
        var headerLength = (int)BinaryPrimitives.ReadUInt32LittleEndian(data.AsSpan(pos));
        pos += 4;
        var header = JsonSerializer.Deserialize(data.AsSpan(pos, headerLength), CheckpointJson.Default.CheckpointHeader)
                     ?? throw Bad("empty header", pos);
        pos += headerLength;
        var sections = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        while (true)
        {
            var nameLength = BinaryPrimitives.ReadUInt16LittleEndian(data.AsSpan(pos));
            pos += 2;
            if (nameLength == EndMarker) break;
            var name = Encoding.UTF8.GetString(data, pos, nameLength);
            pos += nameLength;
            var length = (long)BinaryPrimitives.ReadUInt64LittleEndian(data.AsSpan(pos));
            pos += 8;
            if (length > body.Length - pos) throw Bad($"section '{name}' runs past the end of the file", pos);
            sections[name] = data.AsSpan(pos, (int)length).ToArray();
            pos += (int)length;
        }
        return (header, sections);
    }

    /// <summary>True when the file starts with the checkpoint magic (cheap: reads 8 bytes).</summary>
    public static bool LooksLikeCheckpoint(string path)
    {
        if (!File.Exists(path)) return false;
        Span<byte> head = stackalloc byte[8];
        using var f = File.OpenRead(path);
        return f.ReadAtLeast(head, 8, throwOnEndOfStream: false) == 8 && head.SequenceEqual(Magic);
    }

    /// <summary>Only the header (cheap enough for listing; still verifies the checksum).</summary>
    public static CheckpointHeader ReadHeader(string path) => Read(path).Header;
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals)]
[JsonSerializable(typeof(CheckpointHeader))]
internal sealed partial class CheckpointJson : JsonSerializerContext;

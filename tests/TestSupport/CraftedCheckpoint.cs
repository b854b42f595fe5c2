using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Orchestrator.TestSupport;

/// <summary>
/// Writes a checkpoint file byte by byte in the ORCHCKPT layout with a valid SHA-256, so that a test
/// can put anything inside: the damage a checksum cannot catch (a header that is not JSON, an
/// impossible length, a missing section). Kept apart from the product's writer, which only writes good files.
/// </summary>
public static class CraftedCheckpoint
{
    public static void Write(string path, byte[] header, IEnumerable<(string Name, byte[] Bytes)> sections,
        uint? headerLength = null, bool endMarker = true)
    {
        using var body = new MemoryStream();
        Span<byte> num = stackalloc byte[8];
        body.Write("ORCHCKPT"u8);
        BinaryPrimitives.WriteUInt32LittleEndian(num, 1);
        body.Write(num[..4]);
        BinaryPrimitives.WriteUInt32LittleEndian(num, headerLength ?? (uint)header.Length);
        body.Write(num[..4]);
        body.Write(header);
        foreach (var (name, bytes) in sections)
        {
            var nameBytes = Encoding.UTF8.GetBytes(name);
            BinaryPrimitives.WriteUInt16LittleEndian(num, (ushort)nameBytes.Length);
            body.Write(num[..2]);
            body.Write(nameBytes);
            BinaryPrimitives.WriteUInt64LittleEndian(num, (ulong)bytes.Length);
            body.Write(num);
            body.Write(bytes);
        }
        if (endMarker)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(num, 0xFFFF);
            body.Write(num[..2]);
        }
        var bytesBefore = body.ToArray();
        File.WriteAllBytes(path, [.. bytesBefore, .. SHA256.HashData(bytesBefore)]);
    }

    /// <summary>The three sections every checkpoint has, with placeholder bytes.</summary>
    public static (string Name, byte[] Bytes)[] PlaceholderSections() => [("model", [1, 2, 3]), ("optimizer", [4]), ("rng", [5])];
}

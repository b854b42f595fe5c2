using System.Buffers.Binary;
using System.Formats.Tar;
using System.IO.Compression;
using SkiaSharp;

namespace Orchestrator.Data.Tests;

/// <summary>A fresh folder under the system temp folder, deleted with everything in it on dispose.</summary>
internal sealed class TempDir : IDisposable
{
    public TempDir()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "orch-data-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string Combine(params string[] parts) => System.IO.Path.Combine([Path, .. parts]);

    /// <summary>Creates (if needed) and returns the sub-folder <paramref name="parts"/>.</summary>
    public string Dir(params string[] parts) => Directory.CreateDirectory(Combine(parts)).FullName;

    public void Dispose()
    {
        if (Directory.Exists(Path)) Directory.Delete(Path, recursive: true);
    }
}

/// <summary>Writers of the exact on-disk formats the readers accept, for small hand-made data.</summary>
internal static class TestFiles
{
    public static byte[] IdxImages(int count, int rows, int cols, Func<int, int, byte> pixel, int magic = 0x00000803)
    {
        var data = new byte[16 + count * rows * cols];
        BinaryPrimitives.WriteInt32BigEndian(data, magic);
        BinaryPrimitives.WriteInt32BigEndian(data.AsSpan(4), count);
        BinaryPrimitives.WriteInt32BigEndian(data.AsSpan(8), rows);
        BinaryPrimitives.WriteInt32BigEndian(data.AsSpan(12), cols);
        for (var i = 0; i < count; i++)
            for (var p = 0; p < rows * cols; p++)
                data[16 + i * rows * cols + p] = pixel(i, p);
        return data;
    }

    public static byte[] IdxLabels(IReadOnlyList<byte> labels, int magic = 0x00000801)
    {
        var data = new byte[8 + labels.Count];
        BinaryPrimitives.WriteInt32BigEndian(data, magic);
        BinaryPrimitives.WriteInt32BigEndian(data.AsSpan(4), labels.Count);
        for (var i = 0; i < labels.Count; i++) data[8 + i] = labels[i];
        return data;
    }

    public static byte[] Gzip(byte[] data)
    {
        using var output = new MemoryStream();
        using (var gzip = new GZipStream(output, CompressionLevel.Fastest, leaveOpen: true)) gzip.Write(data);
        return output.ToArray();
    }

    /// <summary>CIFAR records: the label bytes, then 3072 pixel bytes whose value is f(record, pixel).</summary>
    public static byte[] CifarRecords(IReadOnlyList<byte[]> labelBytes, Func<int, int, byte> pixel)
    {
        var size = labelBytes[0].Length + 3072;
        var data = new byte[labelBytes.Count * size];
        for (var r = 0; r < labelBytes.Count; r++)
        {
            labelBytes[r].CopyTo(data, r * size);
            for (var p = 0; p < 3072; p++) data[r * size + labelBytes[r].Length + p] = pixel(r, p);
        }
        return data;
    }

    /// <summary>Writes a solid-colour PNG or JPEG of the given size.</summary>
    public static void Image(string path, int width, int height, SKColor color, SKEncodedImageFormat format = SKEncodedImageFormat.Png)
    {
        using var bitmap = new SKBitmap(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        bitmap.Erase(color);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
        using var file = File.Create(path);
        Assert.True(bitmap.Encode(file, format, 95), "test image could not be encoded");
    }

    /// <summary>
    /// A decompression bomb: a small real image whose header is rewritten to declare
    /// <paramref name="width"/> × <paramref name="height"/> pixels (a PNG's IHDR with its CRC
    /// recomputed, a JPEG's SOF0), as a hostile or damaged file would.
    /// </summary>
    public static void Bomb(string path, int width, int height, SKEncodedImageFormat format)
    {
        Image(path, 8, 8, SKColors.Blue, format);
        var bytes = File.ReadAllBytes(path);
        if (format == SKEncodedImageFormat.Png)
        {
            // Signature (8), IHDR length (4), "IHDR" (4), width, height, 5 more bytes, CRC over type and data.
            BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(16), width);
            BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(20), height);
            BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(29), Crc32(bytes.AsSpan(12, 17)));
        }
        else
        {
            // SOF0 (FF C0): length (2), precision (1), height (2), width (2); JPEG sides are 16-bit.
            var sof = bytes.AsSpan().IndexOf([(byte)0xFF, (byte)0xC0]);
            Assert.True(sof > 0, "no SOF0 marker in the test JPEG");
            BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(sof + 5), checked((ushort)height));
            BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(sof + 7), checked((ushort)width));
        }
        File.WriteAllBytes(path, bytes);
    }

    private static uint Crc32(ReadOnlySpan<byte> data)
    {
        var crc = 0xFFFFFFFFu;
        foreach (var b in data)
        {
            crc ^= b;
            for (var k = 0; k < 8; k++) crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
        }
        return ~crc;
    }

    /// <summary>A .tar.gz holding <paramref name="files"/> (relative path → content).</summary>
    public static byte[] TarGz(IReadOnlyDictionary<string, byte[]> files)
    {
        using var output = new MemoryStream();
        using (var gzip = new GZipStream(output, CompressionLevel.Fastest, leaveOpen: true))
        using (var tar = new TarWriter(gzip, TarEntryFormat.Pax, leaveOpen: true))
        {
            foreach (var (name, content) in files)
            {
                tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(content) });
            }
        }
        return output.ToArray();
    }

    public static string Md5(byte[] data)
    {
#pragma warning disable CA5351 // The catalog's checksums are MD5s.
        return Convert.ToHexStringLower(System.Security.Cryptography.MD5.HashData(data));
#pragma warning restore CA5351
    }
}

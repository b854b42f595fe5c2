using System.Buffers.Binary;
using System.IO.Hashing;

namespace Orchestrator.TensorBoard;

/// <summary>
/// TFRecord framing, the container of TensorBoard event files: each record is
/// <c>uint64 length, uint32 masked_crc32c(length), byte[length] data, uint32 masked_crc32c(data)</c>,
/// all little-endian.
/// </summary>
public static class TfRecord
{
    private const int HeaderBytes = 12, FooterBytes = 4;
    private const uint MaskDelta = 0xa282ead8;

    /// <summary>TensorFlow's masked CRC-32C (Castagnoli): rotate right by 15 bits, add a constant.</summary>
    public static uint MaskedCrc32C(ReadOnlySpan<byte> data)
    {
        var crc = Crc32.HashToUInt32(Crc32ParameterSet.Crc32C, data);
        return ((crc >> 15) | (crc << 17)) + MaskDelta;
    }

    /// <summary>Writes one record: header, data and footer in one write.</summary>
    public static void Write(Stream stream, ReadOnlySpan<byte> data)
    {
        var record = new byte[HeaderBytes + data.Length + FooterBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(record, (ulong)data.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(record.AsSpan(8), MaskedCrc32C(record.AsSpan(0, 8)));
        data.CopyTo(record.AsSpan(HeaderBytes));
        BinaryPrimitives.WriteUInt32LittleEndian(record.AsSpan(HeaderBytes + data.Length), MaskedCrc32C(data));
        stream.Write(record);
    }

    /// <summary>
    /// The records of a stream, each checked against both of its checksums.
    /// A damaged or truncated record throws <see cref="InvalidDataException"/> naming its offset.
    /// </summary>
    public static IEnumerable<byte[]> Read(Stream stream, string name = "event file")
    {
        var header = new byte[HeaderBytes];
        var footer = new byte[FooterBytes];
        long offset = 0;
        while (true)
        {
            var got = stream.ReadAtLeast(header, HeaderBytes, throwOnEndOfStream: false);
            if (got == 0) yield break;
            if (got < HeaderBytes) throw new InvalidDataException($"{name}: truncated record header at byte {offset}");
            var length = BinaryPrimitives.ReadUInt64LittleEndian(header);
            if (BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(8)) != MaskedCrc32C(header.AsSpan(0, 8)))
                throw new InvalidDataException($"{name}: the length checksum of the record at byte {offset} does not match");
            if (length > int.MaxValue) throw new InvalidDataException($"{name}: record at byte {offset} claims {length} bytes");
            var data = new byte[length];
            if (stream.ReadAtLeast(data, data.Length, throwOnEndOfStream: false) < data.Length
                || stream.ReadAtLeast(footer, FooterBytes, throwOnEndOfStream: false) < FooterBytes)
                throw new InvalidDataException($"{name}: truncated record at byte {offset}");
            if (BinaryPrimitives.ReadUInt32LittleEndian(footer) != MaskedCrc32C(data))
                throw new InvalidDataException($"{name}: the data checksum of the record at byte {offset} does not match");
            offset += HeaderBytes + data.Length + FooterBytes;
            yield return data;
        }
    }
}

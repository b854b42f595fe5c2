using System.Buffers.Binary;
using Orchestrator.TensorBoard.Protos;
using Orchestrator.TensorBoard.Protos.HParams;

namespace Orchestrator.TestSupport;

/// <summary>
/// Reads TensorBoard event files back for tests, independently of the writer: its own bitwise
/// CRC-32C, every record's framing and both checksums asserted, then each record parsed as an Event.
/// </summary>
public static class TensorBoardEvents
{
    /// <summary>Bitwise CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): slow and obviously right.</summary>
    public static uint Crc32C(ReadOnlySpan<byte> data)
    {
        var crc = 0xFFFFFFFFu;
        foreach (var b in data)
        {
            crc ^= b;
            for (var k = 0; k < 8; k++) crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
        }
        return ~crc;
    }

    public static uint Masked(ReadOnlySpan<byte> data)
    {
        var crc = Crc32C(data);
        return unchecked(((crc >> 15) | (crc << 17)) + 0xa282ead8u);
    }

    /// <summary>The events of one file; fails the test on any framing or checksum error.</summary>
    public static List<Event> Read(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var events = new List<Event>();
        var at = 0;
        while (at < bytes.Length)
        {
            Assert.True(bytes.Length - at >= 12, $"{path}: truncated header at {at}");
            var length = checked((int)BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(at)));
            Assert.Equal(Masked(bytes.AsSpan(at, 8)), BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(at + 8)));
            Assert.True(bytes.Length - at >= 12 + length + 4, $"{path}: truncated record at {at}");
            var data = bytes.AsSpan(at + 12, length);
            Assert.Equal(Masked(data), BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(at + 12 + length)));
            events.Add(Event.Parser.ParseFrom(data));
            at += 12 + length + 4;
        }
        return events;
    }

    /// <summary>The events of the single event file in <paramref name="dir"/> (not below it).</summary>
    public static List<Event> ReadDir(string dir)
    {
        var files = Directory.GetFiles(dir, "events.out.tfevents.*");
        Assert.True(files.Length == 1, $"expected one event file in {dir}, found {files.Length}");
        return Read(files[0]);
    }

    /// <summary>The values of a scalar tag by step.</summary>
    public static SortedDictionary<long, float> Scalars(IEnumerable<Event> events, string tag)
    {
        var result = new SortedDictionary<long, float>();
        foreach (var e in events.Where(e => e.Summary is not null))
        foreach (var v in e.Summary.Value.Where(v => v.Tag == tag && v.ValueCase == Summary.Types.Value.ValueOneofCase.SimpleValue))
            result[e.Step] = v.SimpleValue;
        return result;
    }

    /// <summary>The HParams plugin data under <paramref name="tag"/> (e.g. "_hparams_/session_start_info"), if written.</summary>
    public static HParamsPluginData? HParams(IEnumerable<Event> events, string tag)
    {
        var value = events.Where(e => e.Summary is not null).SelectMany(e => e.Summary.Value).FirstOrDefault(v => v.Tag == tag);
        if (value is null) return null;
        Assert.Equal("hparams", value.Metadata.PluginData.PluginName);
        return HParamsPluginData.Parser.ParseFrom(value.Metadata.PluginData.Content);
    }
}

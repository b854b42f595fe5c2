using System.Text;
using Orchestrator.TestSupport;
using Orchestrator.Worker.Checkpoints;
using Orchestrator.Worker.Training;

namespace Orchestrator.Worker.UnitTests.Training;

public sealed class CheckpointFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("orch-ckpt-").FullName;

    private static Dictionary<string, byte[]> Sections(byte[] model) => new() { ["model"] = model, ["optimizer"] = [7], ["rng"] = [9] };

    private static CheckpointHeader Header() => new(CheckpointFile.FormatVersion, "epochs: 1\n", "simple-cnn", "fashion-mnist",
        [1, 28, 28], ["a", "b"], [0.5f], [0.25f], 1, 10, 0.9, 1, new PlateauState(1, 2, 0), [], DateTimeOffset.UnixEpoch);

    [Fact]
    public void Sections_and_header_round_trip()
    {
        var path = Path.Combine(_dir, "x.ckpt");
        CheckpointFile.Write(path, Header(), new Dictionary<string, byte[]> { ["model"] = [1, 2, 3], ["optimizer"] = [7], ["rng"] = [9] });
        var (header, sections) = CheckpointFile.Read(path);
        Assert.Equal("simple-cnn", header.Model);
        Assert.Equal(10, header.GlobalStep);
        Assert.Equal(new byte[] { 1, 2, 3 }, sections["model"]);
        Assert.Equal(new byte[] { 9 }, sections["rng"]);
        Assert.Single(Directory.GetFiles(_dir)); // no temp file left behind
    }

    [Fact]
    public void A_flipped_byte_is_reported_as_corruption_naming_the_file()
    {
        var path = Path.Combine(_dir, "bad.ckpt");
        CheckpointFile.Write(path, Header(), Sections(new byte[1000]));
        var bytes = File.ReadAllBytes(path);
        bytes[600] ^= 0xFF;
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<CheckpointFormatException>(() => CheckpointFile.Read(path));
        Assert.Contains("bad.ckpt", e.Message);
        Assert.Contains("checksum mismatch", e.Message);
    }

    [Fact]
    public void A_truncated_file_is_reported()
    {
        var path = Path.Combine(_dir, "short.ckpt");
        CheckpointFile.Write(path, Header(), Sections(new byte[1000]));
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..700]);
        var e = Assert.Throws<CheckpointFormatException>(() => CheckpointFile.Read(path));
        Assert.Contains("short.ckpt", e.Message);
    }

    [Fact]
    public void A_file_that_is_not_a_checkpoint_is_named_as_such()
    {
        var path = Path.Combine(_dir, "notes.txt");
        File.WriteAllText(path, "these are not the weights you are looking for, not at all");
        var e = Assert.Throws<CheckpointFormatException>(() => CheckpointFile.Read(path));
        Assert.Contains("not an Orchestrator checkpoint", e.Message);
    }

    // Files whose checksum is valid but whose content is not: each is one CheckpointFormatException
    // naming the file and the problem, never an exception from inside a parser.
    public static TheoryData<string, string> WrongInside => new()
    {
        { "header-not-json", "header is not valid JSON" },
        { "header-length-huge", "header length 4294967295 exceeds the file size" },
        { "header-null", "header is empty" },
        { "header-empty-object", "header lacks 'trialYaml'" },
        { "header-no-classes", "header lacks 'classes'" },
        { "header-bad-input-shape", "header 'inputShape' [1, 28] is not [channels (1-4), height, width]" },
        { "header-mean-per-channel", "header 'mean' [0.5, 0.5] does not have 1 value(s), one per channel" },
        { "header-wrong-type", "header is not valid JSON" },
        { "no-optimizer", "missing the 'optimizer' section (it has 'model', 'rng')" },
        { "no-sections", "missing the 'model' section (it has none)" },
        { "section-length-huge", "section 'model' length 18446744073709551615 exceeds the file size" },
        { "section-name-binary", "missing the 'optimizer' section (it has 'model', '\\x01\\x02', 'rng')" },
        { "no-end-marker", "the section table runs past the end of the file" },
        { "duplicate-section", "section 'rng' appears twice" },
    };

    [Theory]
    [MemberData(nameof(WrongInside))]
    public void A_checkpoint_wrong_inside_with_a_valid_checksum_is_one_error_naming_the_file(string kind, string expected)
    {
        var path = Path.Combine(_dir, kind + ".ckpt");
        var good = System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(Header(), CheckpointJson.Default.CheckpointHeader);
        string Json(Func<string, string> edit) => edit(Encoding.UTF8.GetString(good));
        var sections = CraftedCheckpoint.PlaceholderSections();
        switch (kind)
        {
            case "header-not-json": CraftedCheckpoint.Write(path, "ceci n'est pas un header"u8.ToArray(), sections); break;
            case "header-length-huge": CraftedCheckpoint.Write(path, good, sections, headerLength: uint.MaxValue); break;
            case "header-null": CraftedCheckpoint.Write(path, "null"u8.ToArray(), sections); break;
            case "header-empty-object": CraftedCheckpoint.Write(path, "{}"u8.ToArray(), sections); break;
            case "header-no-classes": CraftedCheckpoint.Write(path, Encoding.UTF8.GetBytes(Json(j => j.Replace("\"classes\":[\"a\",\"b\"]", "\"classes\":[]", StringComparison.Ordinal))), sections); break;
            case "header-bad-input-shape": CraftedCheckpoint.Write(path, Encoding.UTF8.GetBytes(Json(j => j.Replace("[1,28,28]", "[1,28]", StringComparison.Ordinal))), sections); break;
            case "header-mean-per-channel": CraftedCheckpoint.Write(path, Encoding.UTF8.GetBytes(Json(j => j.Replace("\"mean\":[0.5]", "\"mean\":[0.5,0.5]", StringComparison.Ordinal))), sections); break;
            case "header-wrong-type": CraftedCheckpoint.Write(path, Encoding.UTF8.GetBytes(Json(j => j.Replace("\"globalStep\":10", "\"globalStep\":\"ten\"", StringComparison.Ordinal))), sections); break;
            case "no-optimizer": CraftedCheckpoint.Write(path, good, [("model", [1]), ("rng", [2])]); break;
            case "no-sections": CraftedCheckpoint.Write(path, good, []); break;
            case "section-name-binary": CraftedCheckpoint.Write(path, good, [("model", [1]), ("\u0001\u0002", [2]), ("rng", [3])]); break;
            case "no-end-marker": CraftedCheckpoint.Write(path, good, sections, endMarker: false); break;
            case "duplicate-section": CraftedCheckpoint.Write(path, good, [.. sections, ("rng", [6])]); break;
            case "section-length-huge":
            {
                CraftedCheckpoint.Write(path, good, sections);
                // The model section's u64 length (after its u16 name length and name) set to all ones, the checksum recomputed.
                var bytes = File.ReadAllBytes(path)[..^32];
                var at = 16 + good.Length + 2 + "model".Length;
                bytes.AsSpan(at, 8).Fill(0xFF);
                File.WriteAllBytes(path, [.. bytes, .. System.Security.Cryptography.SHA256.HashData(bytes)]);
                break;
            }
            default: throw new ArgumentOutOfRangeException(nameof(kind));
        }

        var e = Assert.Throws<CheckpointFormatException>(() => CheckpointFile.Read(path));

        Assert.StartsWith(path + ": ", e.Message);
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.DoesNotContain(e.Message, c => char.IsControl(c));
    }

    [Fact]
    public void Errors_name_what_the_caller_calls_a_temporary_copy()
    {
        var path = Path.Combine(_dir, "download.tmp");
        CraftedCheckpoint.Write(path, "{}"u8.ToArray(), CraftedCheckpoint.PlaceholderSections());
        var e = Assert.Throws<CheckpointFormatException>(() => CheckpointFile.Read(path, "the checkpoint of sw-1-t0002"));
        Assert.StartsWith("the checkpoint of sw-1-t0002: header lacks", e.Message);
        Assert.DoesNotContain("download.tmp", e.Message);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}

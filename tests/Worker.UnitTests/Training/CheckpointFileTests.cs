using Orchestrator.Worker.Checkpoints;
using Orchestrator.Worker.Training;

namespace Orchestrator.Worker.UnitTests.Training;

public sealed class CheckpointFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("orch-ckpt-").FullName;

    private static CheckpointHeader Header() => new(CheckpointFile.FormatVersion, "epochs: 1\n", "simple-cnn", "fashion-mnist",
        [1, 28, 28], ["a", "b"], [0.5f], [0.25f], 1, 10, 0.9, 1, new PlateauState(1, 2, 0), [], DateTimeOffset.UnixEpoch);

    [Fact]
    public void Sections_and_header_round_trip()
    {
        var path = Path.Combine(_dir, "x.ckpt");
        CheckpointFile.Write(path, Header(), new Dictionary<string, byte[]> { ["model"] = [1, 2, 3], ["rng"] = [9] });
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
        CheckpointFile.Write(path, Header(), new Dictionary<string, byte[]> { ["model"] = new byte[1000] });
        var bytes = File.ReadAllBytes(path);
        bytes[600] ^= 0xFF;
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<InvalidDataException>(() => CheckpointFile.Read(path));
        Assert.Contains("bad.ckpt", e.Message);
        Assert.Contains("checksum mismatch", e.Message);
    }

    [Fact]
    public void A_truncated_file_is_reported()
    {
        var path = Path.Combine(_dir, "short.ckpt");
        CheckpointFile.Write(path, Header(), new Dictionary<string, byte[]> { ["model"] = new byte[1000] });
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..700]);
        var e = Assert.Throws<InvalidDataException>(() => CheckpointFile.Read(path));
        Assert.Contains("short.ckpt", e.Message);
    }

    [Fact]
    public void A_file_that_is_not_a_checkpoint_is_named_as_such()
    {
        var path = Path.Combine(_dir, "notes.txt");
        File.WriteAllText(path, "these are not the weights you are looking for, not at all");
        var e = Assert.Throws<InvalidDataException>(() => CheckpointFile.Read(path));
        Assert.Contains("not an Orchestrator checkpoint", e.Message);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}

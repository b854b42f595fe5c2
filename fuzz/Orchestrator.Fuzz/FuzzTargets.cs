using Google.Protobuf;
using Orchestrator.Data;
using Orchestrator.Data.Readers;
using Orchestrator.Protocol.V1;
using Orchestrator.Specs;
using Orchestrator.Sweeps;
using Orchestrator.Trials;
using Orchestrator.Worker.Checkpoints;

namespace Orchestrator.Fuzz;

/// <summary>
/// The parsers that read what users and peers send, each as one fuzz target: an input either
/// parses or fails with the parser's own user-facing error (a spec error naming the field, a
/// data error naming the file and offset, an invalid protobuf message). Any other exception, a
/// hang or a crash is a bug, and AFL++ keeps the input. The unit tests replay the seed corpus and
/// every input that once failed (fuzz/regressions) through the same code.
/// </summary>
public static class FuzzTargets
{
    /// <summary>Target names, as fuzz/run.sh and the corpus folders spell them.</summary>
    public static readonly IReadOnlyList<string> Names = ["sweep", "trial", "idx-images", "idx-labels", "cifar", "checkpoint", "gradient-hello"];

    /// <summary>Feeds <paramref name="input"/> to <paramref name="target"/>; throws only when the parser fails in a way it must not.</summary>
    public static void Run(string target, byte[] input)
    {
        try
        {
            Parse(target, input);
        }
        catch (Exception e) when (Expected(e))
        {
            // The parser said what is wrong, as it should.
        }
    }

    private static bool Expected(Exception e) =>
        e is SpecException or DataFormatException or InvalidDataException or InvalidProtocolBufferException or CheckpointFormatException;

    private static void Parse(string target, byte[] input)
    {
        switch (target)
        {
            case "sweep":
                // Made here, not in a static field: instrumented code must not run before the fuzzer set up its shared memory.
                ValidatedSweep.Parse(Text(input), "fuzz.yaml", new SweepLimits(100_000, 64, 10_000));
                break;
            case "trial":
                TrialSpecYaml.Parse(Text(input), "fuzz.yaml");
                break;
            case "idx-images":
                WithFile(input, "images-idx3-ubyte", path => IdxReader.ReadImages(path));
                break;
            case "idx-labels":
                WithFile(input, "labels-idx1-ubyte", path => IdxReader.ReadLabels(path, 10));
                break;
            case "cifar":
                WithFile(input, "test_batch.bin", path => CifarReader.ReadCifar10(Path.GetDirectoryName(path)!, train: false));
                break;
            case "checkpoint":
                // The file ends in a SHA-256 of the rest: set it, or nearly every input would stop at
                // the checksum and the content checks behind it would never be reached.
                WithFile(WithChecksum(input), "fuzz.ckpt", path => CheckpointFile.Read(path));
                break;
            case "gradient-hello":
                var hello = GradientSocketHello.Parser.ParseFrom(input);
                _ = (hello.Header?.TrialId, hello.Authorization);
                break;
            default:
                throw new ArgumentException($"unknown fuzz target '{target}': one of {string.Join(", ", Names)}");
        }
    }

    /// <summary><paramref name="input"/> with its last 32 bytes replaced by the SHA-256 of the bytes before them.</summary>
    public static byte[] WithChecksum(byte[] input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.Length < 32) return input;
        var fixedUp = (byte[])input.Clone();
        System.Security.Cryptography.SHA256.HashData(fixedUp.AsSpan(0, fixedUp.Length - 32), fixedUp.AsSpan(fixedUp.Length - 32));
        return fixedUp;
    }

    /// <summary>Writes the seed inputs that only this code can make (a checkpoint, a gradient-socket hello) under <paramref name="corpus"/>.</summary>
    public static void WriteSeeds(string corpus)
    {
        var checkpoints = Directory.CreateDirectory(Path.Combine(corpus, "checkpoint")).FullName;
        var header = new Orchestrator.Worker.Checkpoints.CheckpointHeader(CheckpointFile.FormatVersion, "epochs: 1\n", "simple-cnn", "fashion-mnist", [1, 28, 28], ["a", "b"],
            [0.5f], [0.25f], 1, 10, 0.5, 1, new Orchestrator.Worker.Training.PlateauState(1.0, 2.0, 0), [], DateTimeOffset.UnixEpoch);
        CheckpointFile.Write(Path.Combine(checkpoints, "small.ckpt"), header,
            new Dictionary<string, byte[]> { ["model"] = [1, 2, 3, 4], ["optimizer"] = [5, 6], ["rng"] = [7] });
        var hellos = Directory.CreateDirectory(Path.Combine(corpus, "gradient-hello")).FullName;
        var hello = new GradientSocketHello { Authorization = "Bearer t", Header = new GradientStreamHeader { TrialId = "sw-1-t0000", FencingToken = 1, Rank = 0, WorldSize = 2, ChunkFloats = 1024 } };
        File.WriteAllBytes(Path.Combine(hellos, "hello.bin"), hello.ToByteArray());
    }

    private static string Text(byte[] input) => System.Text.Encoding.UTF8.GetString(input);

    private static void WithFile(byte[] input, string name, Action<string> read)
    {
        var dir = Path.Combine(Path.GetTempPath(), $"orch-fuzz-{Environment.ProcessId}");
        Directory.CreateDirectory(dir);
        var path = Path.Combine(dir, name);
        File.WriteAllBytes(path, input);
        try
        {
            read(path);
        }
        finally
        {
            File.Delete(path);
        }
    }
}

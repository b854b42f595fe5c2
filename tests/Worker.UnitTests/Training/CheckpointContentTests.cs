using Orchestrator.Trials;
using Orchestrator.Worker.Checkpoints;
using Orchestrator.Worker.Native;
using Orchestrator.Worker.Training;
using Orchestrator.Worker.UnitTests.Support;
using TorchSharp;
using Xunit.Abstractions;

namespace Orchestrator.Worker.UnitTests.Training;

/// <summary>
/// Checkpoints that pass the checksum and the reader's structural checks but hold what their header
/// does not describe (another model's weights, other shapes, foreign optimizer or generator state):
/// loading, resuming and transfer learning each fail with one error naming the file.
/// </summary>
[Collection(SerialTorchCollection.Name)]
public sealed class CheckpointContentTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("orch-ckpt-content-").FullName;
    private readonly string _good;

    private readonly ITestOutputHelper _output;

    public CheckpointContentTests(ITestOutputHelper output)
    {
        _output = output;
        TorchRuntime.Initialize();
        var spec = new TrialSpec
        {
            Data = new DataSpec { Name = "synthetic" },
            Model = new ModelSpec { Name = "simple-cnn" },
            Epochs = 1,
            BatchSize = 32,
            Seed = 3,
            Optimizer = new OptimizerSpec { Name = "sgd", Lr = 0.05 },
        };
        using var session = new TrainingSession(spec, TinyData.Splits(64, 32), torch.CPU, Path.Combine(_dir, "run"));
        _good = session.Run().LastCheckpoint!;
    }

    /// <summary>A copy of the good checkpoint, changed and written with a valid checksum.</summary>
    private string Variant(string name, Func<CheckpointHeader, CheckpointHeader> header, Action<Dictionary<string, byte[]>>? sections = null)
    {
        var (h, s) = CheckpointFile.Read(_good);
        sections?.Invoke(s);
        var path = Path.Combine(_dir, name);
        CheckpointFile.Write(path, header(h), s);
        return path;
    }

    private static CheckpointHeader AsModel(CheckpointHeader h, string model) =>
        h with { Model = model, TrialYaml = h.TrialYaml.Replace("name: simple-cnn", "name: " + model, StringComparison.Ordinal) };

    private static void AssertOneLineNaming(string path, Exception e, string expected)
    {
        Assert.StartsWith(path + ": ", e.Message);
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain(e.Message, c => char.IsControl(c));
    }

    [Fact]
    public void The_weights_of_another_model_are_named_as_such()
    {
        var path = Variant("other-model.ckpt", h => AsModel(h, "resnet18"));
        var e = Assert.Throws<CheckpointFormatException>(() => TrainingSession.LoadModel(path, torch.CPU));
        AssertOneLineNaming(path, e, "the model section does not hold resnet18 weights for 4 classes of 1x16x16 images");
    }

    [Fact]
    public void Weights_of_other_shapes_than_the_header_says_are_named_as_such()
    {
        var path = Variant("five-classes.ckpt", h => h with { Classes = [.. h.Classes, "centre"] });
        var e = Assert.Throws<CheckpointFormatException>(() => TrainingSession.LoadModel(path, torch.CPU));
        AssertOneLineNaming(path, e, "the model section does not hold simple-cnn weights for 5 classes");
    }

    [Fact]
    public void A_header_and_trial_that_disagree_on_the_model_or_an_unknown_model_are_named()
    {
        var path = Variant("disagree.ckpt", h => h with { Model = "resnet18" });
        var e = Assert.Throws<CheckpointFormatException>(() => TrainingSession.LoadModel(path, torch.CPU));
        AssertOneLineNaming(path, e, "its header says model 'resnet18' but its trial says 'simple-cnn'");

        path = Variant("vgg.ckpt", h => AsModel(h, "vgg16"));
        e = Assert.Throws<CheckpointFormatException>(() => TrainingSession.LoadModel(path, torch.CPU));
        AssertOneLineNaming(path, e, "its trial settings are invalid");
        Assert.Contains("unknown model 'vgg16'", e.Message);
    }

    [Fact]
    public void Resuming_from_foreign_optimizer_or_generator_state_is_named()
    {
        var data = TinyData.Splits(64, 32);
        var path = Variant("optimizer.ckpt", h => h, s => s[CheckpointFile.OptimizerSection] = [0xFF, 0x01, 0x00, 0x07]);
        var e = Assert.Throws<CheckpointFormatException>(() => TrainingSession.Resume(path, data, torch.CPU, Path.Combine(_dir, "r1")));
        AssertOneLineNaming(path, e, "the optimizer section does not fit sgd");

        path = Variant("rng.ckpt", h => h, s => s[CheckpointFile.RngSection] = [1, 2, 3]);
        e = Assert.Throws<CheckpointFormatException>(() => TrainingSession.Resume(path, data, torch.CPU, Path.Combine(_dir, "r2")));
        AssertOneLineNaming(path, e, "the rng section is 3 bytes, a generator state is");

        // What a downloaded copy is called in the trial's error.
        e = Assert.Throws<CheckpointFormatException>(() => TrainingSession.Resume(path, data, torch.CPU, Path.Combine(_dir, "r3"), name: "the stored checkpoint of sw-1-t0001"));
        Assert.StartsWith("the stored checkpoint of sw-1-t0001: the rng section", e.Message);
    }

    [Fact]
    public void Pretrained_weights_from_a_damaged_checkpoint_name_the_users_file_and_print_no_binary()
    {
        var garbage = new byte[512];
        new Random(7).NextBytes(garbage);
        garbage[0] = 1; // one entry, then a name of random bytes
        var path = Variant("pretrained.ckpt", h => h, s => s[CheckpointFile.ModelSection] = garbage);
        var spec = new TrialSpec
        {
            Data = new DataSpec { Name = "synthetic" },
            Model = new ModelSpec { Name = "simple-cnn" },
            Epochs = 1,
            Pretrained = new PretrainedSpec { Path = path },
        };

        var e = Assert.Throws<InvalidDataException>(() => new TrainingSession(spec, TinyData.Splits(64, 32), torch.CPU, Path.Combine(_dir, "t")));

        _output.WriteLine(e.Message);
        AssertOneLineNaming(path, e, "has unknown element type");
        Assert.DoesNotContain("orch-pretrained", e.Message);
        Assert.DoesNotContain(e.Message, c => c == '\uFFFD');
    }

    [Fact]
    public void A_downloaded_copy_is_named_as_the_trials_checkpoint_when_converted()
    {
        // orch best --download converts from a temporary copy; the user knows it as the trial's checkpoint.
        var path = Variant("model.pt.download", h => AsModel(h, "resnet18"));
        var e = Assert.Throws<CheckpointFormatException>(() => Orchestrator.Worker.Export.CheckpointExporter.Export(
            new Orchestrator.Worker.Export.ExportRequest(path, "pytorch", Path.Combine(_dir, "model.pt"), SourceName: "sw-1-t0002 (of sw-1)")));
        Assert.StartsWith("the checkpoint of sw-1-t0002 (of sw-1): the model section does not hold resnet18 weights", e.Message);
        Assert.DoesNotContain(".download", e.Message);
        Assert.False(File.Exists(Path.Combine(_dir, "model.pt")));
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}

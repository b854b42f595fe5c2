using Orchestrator.Data;
using Orchestrator.Trials;
using Orchestrator.Worker.Checkpoints;
using Orchestrator.Worker.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Orchestrator.Worker.Training;

public sealed partial class TrainingSession
{
    private const string ModelSection = "model";
    private const string OptimizerSection = "optimizer";
    private const string RngSection = "rng";
    private const string PruningSection = "pruning";

    /// <summary>Writes weights, optimiser state, schedule position, epoch/step, RNG state, pruning masks, the trial and its metrics.</summary>
    public void SaveCheckpoint(string path)
    {
        var sections = new Dictionary<string, byte[]>(StringComparer.Ordinal)
        {
            [ModelSection] = Serialize(w => _model.save(w)),
            [OptimizerSection] = Serialize(w => _optimizer.save_state_dict(w)),
        };
        using (var rng = torch.get_rng_state())
            sections[RngSection] = rng.data<byte>().ToArray();
        if (_pruner is not null) sections[PruningSection] = _pruner.Save();
        var s = _data.Info;
        var inputSide = _spec.Augment.CropSize ?? s.Shape.Height;
        var header = new CheckpointHeader(CheckpointFile.FormatVersion, TrialSpecYaml.Serialize(_spec), _spec.Model.Name, s.Name,
            [s.Shape.Channels, inputSide, inputSide], [.. s.Classes], s.Mean, s.Std, _epochsCompleted, _step,
            _bestAccuracy, _bestEpoch, _schedule.Plateau, [.. _history], DateTimeOffset.UtcNow);
        CheckpointFile.Write(path, header, sections);
    }

    /// <summary>
    /// Continues a run from a checkpoint: the same trial (optionally with more epochs), weights,
    /// optimiser state, schedule position and RNG state, so the rest of the run is what it would
    /// have been without the interruption.
    /// </summary>
    public static TrainingSession Resume(string checkpoint, DatasetSplits data, Device device, string runDir,
        ITrainingObserver? observer = null, int? epochs = null, DistributedContext? distributed = null)
    {
        var (header, sections) = CheckpointFile.Read(checkpoint);
        var spec = TrialSpecYaml.Parse(header.TrialYaml, checkpoint + " (trial)");
        if (epochs is { } e) spec.Epochs = e;
        // The pretrained file's weights are already inside the checkpoint.
        spec.Pretrained = null;
        var session = new TrainingSession(spec, data, device, runDir, observer, distributed);
        try
        {
            Deserialize(sections[ModelSection], r => session._model.load(r));
            Deserialize(sections[OptimizerSection], r => session._optimizer.load_state_dict(r));
            using (var rng = torch.tensor(sections[RngSection], ScalarType.Byte))
                torch.set_rng_state(rng);
            // The masks continue where they were; the schedule follows from the step count.
            if (session._pruner is not null && sections.TryGetValue(PruningSection, out var masks))
            {
                try
                {
                    session._pruner.Load(masks);
                }
                catch (Exception bad) when (bad is EndOfStreamException or InvalidDataException)
                {
                    throw new InvalidDataException($"{checkpoint}: damaged pruning masks: {bad.Message}", bad);
                }
            }
            session._epochsCompleted = header.EpochsCompleted;
            session._step = header.GlobalStep;
            session._bestAccuracy = header.BestValAccuracy;
            session._bestEpoch = header.BestEpoch;
            session._schedule.Plateau = header.Plateau;
            session._history.AddRange(header.History);
            return session;
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    /// <summary>Loads the model of a checkpoint for evaluation or export, on <paramref name="device"/>.</summary>
    public static (ImageClassifier Model, CheckpointHeader Header, TrialSpec Spec) LoadModel(string checkpoint, Device device)
    {
        var (header, sections) = CheckpointFile.Read(checkpoint);
        var spec = TrialSpecYaml.Parse(header.TrialYaml, checkpoint + " (trial)");
        var input = new ImageShape(header.InputShape[0], header.InputShape[1], header.InputShape[2]);
        var model = ModelRegistry.Create(spec.Model, input, header.Classes.Length);
        Deserialize(sections[ModelSection], r => model.load(r));
        model.to(device);
        model.eval();
        return (model, header, spec);
    }

    /// <summary>
    /// Transfer learning from a file: an Orchestrator checkpoint (its model section, so
    /// <c>--pretrained runs/x/best.ckpt</c> works) or any format <see cref="PretrainedWeights"/> reads.
    /// </summary>
    private static PretrainedLoadReport LoadPretrained(ImageClassifier model, PretrainedSpec spec)
    {
        if (!CheckpointFile.LooksLikeCheckpoint(spec.Path)) return PretrainedWeights.Load(model, spec);
        var (_, sections) = CheckpointFile.Read(spec.Path);
        var tmp = Path.Combine(Path.GetTempPath(), $"orch-pretrained-{Environment.ProcessId}-{Guid.NewGuid():N}.bin");
        try
        {
            File.WriteAllBytes(tmp, sections[ModelSection]);
            return PretrainedWeights.Load(model, new PretrainedSpec { Path = tmp, Format = "torchsharp", FreezeBackbone = spec.FreezeBackbone });
        }
        finally
        {
            File.Delete(tmp);
        }
    }

    private static byte[] Serialize(Action<BinaryWriter> write)
    {
        using var stream = new MemoryStream();
        using (var writer = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true)) write(writer);
        return stream.ToArray();
    }

    private static void Deserialize(byte[] bytes, Action<BinaryReader> read)
    {
        using var stream = new MemoryStream(bytes, writable: false);
        using var reader = new BinaryReader(stream);
        read(reader);
    }
}

using Orchestrator.Data;
using Orchestrator.Trials;
using Orchestrator.Worker.Checkpoints;
using Orchestrator.Worker.Models;
using Orchestrator.Worker.Plugins;
using TorchSharp;
using static TorchSharp.torch;

namespace Orchestrator.Worker.Training;

public sealed partial class TrainingSession
{
    private const string ModelSection = CheckpointFile.ModelSection;
    private const string OptimizerSection = CheckpointFile.OptimizerSection;
    private const string RngSection = CheckpointFile.RngSection;
    private const string PruningSection = CheckpointFile.PruningSection;
    private const string LossScaleSection = CheckpointFile.LossScaleSection;

    /// <summary>Writes weights, optimiser state, schedule position, epoch/step, RNG state, pruning masks, the trial and its metrics.</summary>
    public void SaveCheckpoint(string path)
    {
        // The fp32 master, with the normalisation statistics training updated in the compute copy.
        _mixed?.BuffersToMaster();
        var sections = new Dictionary<string, byte[]>(StringComparer.Ordinal)
        {
            [ModelSection] = Serialize(w => _model.save(w)),
            [OptimizerSection] = Serialize(w => _optimizer.save_state_dict(w)),
        };
        using (var rng = torch.get_rng_state())
            sections[RngSection] = rng.data<byte>().ToArray();
        if (_pruner is not null) sections[PruningSection] = _pruner.Save();
        if (_mixed?.Scaler is { } scaler) sections[LossScaleSection] = scaler.Save();
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
    /// <param name="name">What errors call the checkpoint when <paramref name="checkpoint"/> is a downloaded copy.</param>
    /// <exception cref="CheckpointFormatException">The checkpoint is damaged, or its contents do not fit its own trial.</exception>
    public static TrainingSession Resume(string checkpoint, DatasetSplits data, Device device, string runDir,
        ITrainingObserver? observer = null, int? epochs = null, DistributedContext? distributed = null, string? name = null,
        TrialPlugins? plugins = null)
    {
        name ??= checkpoint;
        var (header, sections) = CheckpointFile.Read(checkpoint, name);
        var spec = CheckpointFile.ParseTrial(header, name);
        if (epochs is { } e) spec.Epochs = e;
        // The model is built for the data; a header that disagrees is another run's, or damaged.
        if (header.Classes.Length != data.Info.NumClasses)
            throw new CheckpointFormatException(name, $"its header lists {header.Classes.Length} classes, data set {data.Info.Name} has {data.Info.NumClasses}");
        // The pretrained file's weights are already inside the checkpoint.
        spec.Pretrained = null;
        var session = new TrainingSession(spec, data, device, runDir, observer, distributed, plugins);
        try
        {
            LoadWeights(session._model, sections[ModelSection], header, name);
            try
            {
                Deserialize(sections[OptimizerSection], r => session._optimizer.load_state_dict(r));
            }
            catch (Exception bad) when (IsLoadFailure(bad))
            {
                throw new CheckpointFormatException(name,
                    $"the optimizer section does not fit {spec.Optimizer.Name} on this model: {QuotedText.Printable(bad.Message)}", null, bad);
            }
            using (var current = torch.get_rng_state())
            {
                // The generator's state has one size; another is not a state this libtorch wrote.
                if (sections[RngSection].Length != current.NumberOfElements)
                    throw new CheckpointFormatException(name, $"the rng section is {sections[RngSection].Length} bytes, a generator state is {current.NumberOfElements}");
            }
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
                    throw new CheckpointFormatException(name, $"damaged pruning masks: {QuotedText.Printable(bad.Message)}", null, bad);
                }
            }
            if (session._mixed is { } mixed)
            {
                // The compute copy follows the loaded master; fp16 goes on with the saved loss scale.
                mixed.WeightsToCompute();
                mixed.BuffersToCompute();
                if (mixed.Scaler is { } scaler && sections.TryGetValue(LossScaleSection, out var scale))
                {
                    try
                    {
                        scaler.Load(scale);
                    }
                    catch (InvalidDataException bad)
                    {
                        throw new CheckpointFormatException(name, $"damaged loss-scale state: {bad.Message}", null, bad);
                    }
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
    /// <param name="name">What errors call the checkpoint when <paramref name="checkpoint"/> is a downloaded copy.</param>
    /// <param name="plugins">
    /// The plug-ins of the checkpoint's trial, where its model comes from one; when not given they are
    /// loaded from the paths the trial names and stay loaded for the process (a command's lifetime).
    /// </param>
    /// <exception cref="CheckpointFormatException">The checkpoint is damaged, or its weights do not fit its model.</exception>
    /// <exception cref="PluginException">The trial's model plug-in cannot be loaded.</exception>
    /// <param name="locate">Where the plug-in the trial names is on this machine (see <see cref="TrialPlugins.Load"/>), when not given by <paramref name="plugins"/>.</param>
    public static (ImageClassifier Model, CheckpointHeader Header, TrialSpec Spec) LoadModel(string checkpoint, Device device, string? name = null,
        TrialPlugins? plugins = null, Func<string, string>? locate = null)
    {
        name ??= checkpoint;
        var (header, sections) = CheckpointFile.Read(checkpoint, name);
        var spec = CheckpointFile.ParseTrial(header, name);
        var input = new ImageShape(header.InputShape[0], header.InputShape[1], header.InputShape[2]);
        ImageClassifier model;
        try
        {
            // Only the model's plug-in: evaluation brings its own data.
            plugins ??= spec.Model.Plugin is null ? null : TrialPlugins.Load(new TrialSpec { Model = spec.Model }, locate: locate);
            model = ModelRegistry.Create(spec.Model, input, header.Classes.Length, plugins);
        }
        catch (ArgumentException e)
        {
            throw new CheckpointFormatException(name, $"its model cannot be built: {QuotedText.Printable(e.Message)}", null, e);
        }
        try
        {
            LoadWeights(model, sections[ModelSection], header, name);
            model.to(device);
            model.eval();
            return (model, header, spec);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The model section into <paramref name="model"/>. TorchSharp's loader checks names, element types
    /// and shapes; whatever it throws on another model's weights or a damaged section becomes one line.
    /// </summary>
    private static void LoadWeights(ImageClassifier model, byte[] weights, CheckpointHeader header, string name)
    {
        try
        {
            Deserialize(weights, r => model.load(r));
        }
        catch (Exception bad) when (IsLoadFailure(bad))
        {
            throw new CheckpointFormatException(name,
                $"the model section does not hold {header.Model} weights for {header.Classes.Length} classes of {string.Join("x", header.InputShape)} images: " +
                QuotedText.Printable(bad.Message), null, bad);
        }
    }

    // What TorchSharp's loaders throw on bytes that are not the state they expect: a name or shape
    // mismatch (ArgumentException), a short section (EndOfStreamException), a garbage length or
    // element type (IOException, InvalidDataException, FormatException, OverflowException), or libtorch's own error.
    private static bool IsLoadFailure(Exception e) => e is ArgumentException or IOException or InvalidDataException or FormatException
        or OverflowException or NotSupportedException or KeyNotFoundException or IndexOutOfRangeException or System.Runtime.InteropServices.ExternalException;

    /// <summary>
    /// Transfer learning from a file: an Orchestrator checkpoint (its model section, so
    /// <c>--pretrained runs/x/best.ckpt</c> works) or any format <see cref="PretrainedWeights"/> reads.
    /// </summary>
    private static PretrainedLoadReport LoadPretrained(ImageClassifier model, PretrainedSpec spec)
    {
        if (!CheckpointFile.LooksLikeCheckpoint(spec.Path)) return PretrainedWeights.Load(model, spec);
        var (_, sections) = CheckpointFile.Read(spec.Path);
        // From memory, so that errors name the user's checkpoint rather than a temporary copy.
        return PretrainedWeights.LoadTorchSharp(model, sections[ModelSection], spec.Path, spec.FreezeBackbone);
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

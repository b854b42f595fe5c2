using System.CommandLine;
using System.Globalization;
using Orchestrator.Cli.Output;
using Orchestrator.Worker.Native;
using Orchestrator.Worker.Plugins;
using Orchestrator.Worker.Training;

namespace Orchestrator.Cli.Commands;

/// <summary>`orch train`: one training run on this machine.</summary>
internal static class TrainCommand
{
    public static Command Create()
    {
        var trial = new TrialOptions();
        var output = new Option<string?>("--out") { Description = "Run folder for checkpoints and metrics.jsonl (default runs/<dataset>-<model>-<time>).", HelpName = "DIR" };
        var resume = new Option<string?>("--resume") { Description = "Continue the run saved in this checkpoint (its trial settings are used; --epochs may extend it).", HelpName = "CKPT" };
        var tensorBoard = new Option<string?>("--tensorboard")
        {
            Description = "Also write TensorBoard event files to this folder: losses, accuracies and learning rate per epoch, and the run's " +
                          "hyperparameters for the HParams view. Give each run its own folder under one parent, then: tensorboard --logdir PARENT",
            HelpName = "DIR",
        };
        var device = CommonOptions.Device();
        var libTorch = CommonOptions.LibTorchDir();
        var json = CommonOptions.Json();

        var command = new Command("train", "Train one model on one data set, evaluating every epoch and saving checkpoints.\n" +
                                           "Example: orch train --dataset fashion-mnist --model simple-cnn --epochs 1");
        trial.AddTo(command);
        foreach (var o in new Option[] { output, resume, tensorBoard, device, libTorch, json })
            command.Add(o);

        command.SetAction((parse, ct) =>
        {
            var spec = trial.Build(parse);
            var jsonMode = parse.GetValue(json);
            var console = new TrainingConsole(jsonMode);
            TorchRuntime.Initialize(parse.GetValue(libTorch));
            var dev = TorchRuntime.ResolveDevice(parse.GetValue(device));
            var runDir = parse.GetValue(output) ?? Path.Combine("runs",
                $"{spec.Data.Name}-{spec.Model.Name}-{DateTime.Now.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture)}");
            var resumeFrom = parse.GetValue(resume);
            if (resumeFrom is not null)
            {
                // The checkpoint's own trial settings decide the data set; read them before loading data.
                var header = Worker.Checkpoints.CheckpointFile.ReadHeader(resumeFrom);
                spec = Worker.Checkpoints.CheckpointFile.ParseTrial(header, resumeFrom);
                if (parse.GetResult(trial.DataDir) is not null) spec.Data.Dir = parse.GetValue(trial.DataDir);
                if (parse.GetValue(output) is null) runDir = Path.GetDirectoryName(Path.GetFullPath(resumeFrom))!;
            }

            using var plugins = TrialPlugins.Load(spec);
            var data = console.LoadData(spec.Data, spec.Seed, ct, plugins);
            using var board = parse.GetValue(tensorBoard) is { } boardDir ? new TensorBoardObserver(boardDir, spec) : null;
            ITrainingObserver observer = board is null ? console : new CompositeObserver(console, board);
            using var session = resumeFrom is null
                ? new TrainingSession(spec, data, dev, runDir, observer, plugins: plugins)
                : TrainingSession.Resume(resumeFrom, data, dev, runDir, observer, parse.GetValue(trial.Epochs), plugins: plugins);
            if (session.PretrainedReport is { } report) console.ReportPretrained(report);
            var result = console.Run(session, ct);
            console.Summary(result, data.Info, board?.EventFile);
            return Task.FromResult(ExitCodes.Ok);
        });
        return command;
    }
}

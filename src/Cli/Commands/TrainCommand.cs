using System.CommandLine;
using System.Globalization;
using Orchestrator.Cli.Output;
using Orchestrator.Data;
using Orchestrator.Trials;
using Orchestrator.Worker.Native;
using Orchestrator.Worker.Training;

namespace Orchestrator.Cli.Commands;

/// <summary>`orch train`: one training run on this machine.</summary>
internal static class TrainCommand
{
    public static Command Create()
    {
        var trialFile = new Argument<FileInfo?>("trial.yaml")
        {
            Description = "Optional trial file (see docs/trial-spec.md); options given on the command line override it.",
            Arity = ArgumentArity.ZeroOrOne,
        };
        // An unknown --option would otherwise be taken for the file name.
        trialFile.Validators.Add(r =>
        {
            if (r.Tokens is [{ Value: var v }] && v.StartsWith('-')) r.AddError($"Unrecognized option '{v}'");
        });
        var dataset = new Option<string?>("--dataset") { Description = $"Data set: {string.Join(", ", KnownNames.Datasets)}.", HelpName = "NAME" };
        var dataDir = CommonOptions.DataDir();
        var model = new Option<string?>("--model") { Description = $"Model: {string.Join(", ", KnownNames.Models)}.", HelpName = "NAME" };
        var epochs = new Option<int?>("--epochs") { Description = "Passes over the training set (default 5).", HelpName = "N" };
        var batchSize = new Option<int?>("--batch-size") { Description = "Images per step (default 128).", HelpName = "N" };
        var optimizer = new Option<string?>("--optimizer") { Description = $"Optimiser: {string.Join(", ", KnownNames.Optimizers)} (default sgd with Nesterov momentum 0.9).", HelpName = "NAME" };
        var lr = new Option<double?>("--lr") { Description = "Peak learning rate (default 0.05).", HelpName = "RATE" };
        var weightDecay = new Option<double?>("--weight-decay") { Description = "L2 weight decay (default 5e-4).", HelpName = "W" };
        var schedule = new Option<string?>("--schedule") { Description = $"Learning-rate schedule: {string.Join(", ", KnownNames.Schedules)} (default cosine).", HelpName = "NAME" };
        var dropout = new Option<double?>("--dropout") { Description = "Dropout before the classifier (default 0).", HelpName = "P" };
        var labelSmoothing = new Option<double?>("--label-smoothing") { Description = "Cross-entropy label smoothing (default 0).", HelpName = "E" };
        var augment = new Option<bool>("--augment") { Description = "Standard augmentation for the data set: random crop with padding and horizontal flip." };
        var seed = new Option<int?>("--seed") { Description = "Seeds weights, data order, augmentation and dropout (default 0).", HelpName = "N" };
        var limitTrain = new Option<int?>("--limit-train") { Description = "Train on a seeded subset of N images.", HelpName = "N" };
        var limitTest = new Option<int?>("--limit-test") { Description = "Evaluate on a seeded subset of N images.", HelpName = "N" };
        var holdout = new Option<double?>("--holdout") { Description = "Validate on this fraction of train, held out (default: the test split).", HelpName = "F" };
        var pretrained = new Option<string?>("--pretrained") { Description = "Start from these weights (.ckpt, TorchSharp, PyTorch .pt or .safetensors); the classifier head is replaced when the class count differs.", HelpName = "FILE" };
        var freeze = new Option<bool>("--freeze-backbone") { Description = "With --pretrained: train only the new classifier head." };
        var output = new Option<string?>("--out") { Description = "Run folder for checkpoints and metrics.jsonl (default runs/<dataset>-<model>-<time>).", HelpName = "DIR" };
        var resume = new Option<string?>("--resume") { Description = "Continue the run saved in this checkpoint (its trial settings are used; --epochs may extend it).", HelpName = "CKPT" };
        var noDownload = new Option<bool>("--no-download") { Description = "Fail instead of downloading a missing data set." };
        var device = CommonOptions.Device();
        var libTorch = CommonOptions.LibTorchDir();
        var json = CommonOptions.Json();

        var command = new Command("train", "Train one model on one data set, evaluating every epoch and saving checkpoints.\n" +
                                           "Example: orch train --dataset fashion-mnist --model simple-cnn --epochs 1");
        command.Add(trialFile);
        foreach (var o in new Option[] { dataset, dataDir, model, epochs, batchSize, optimizer, lr, weightDecay, schedule, dropout,
                     labelSmoothing, augment, seed, limitTrain, limitTest, holdout, pretrained, freeze, output, resume, noDownload,
                     device, libTorch, json })
            command.Add(o);

        command.SetAction((parse, ct) =>
        {
            var spec = parse.GetValue(trialFile) is { } file ? TrialSpecYaml.Load(file.FullName) : new TrialSpec();
            void Set<T>(Option<T> option, Action<T> apply)
            {
                if (parse.GetResult(option) is not null) apply(parse.GetValue(option)!);
            }
            Set(dataset, v => spec.Data.Name = v!);
            Set(dataDir, v => spec.Data.Dir = v);
            Set(model, v => spec.Model.Name = v!);
            Set(epochs, v => spec.Epochs = v!.Value);
            Set(batchSize, v => spec.BatchSize = v!.Value);
            Set(optimizer, v => spec.Optimizer.Name = v!);
            Set(lr, v => spec.Optimizer.Lr = v!.Value);
            Set(weightDecay, v => spec.Optimizer.WeightDecay = v!.Value);
            Set(schedule, v => spec.Schedule.Name = v!);
            Set(dropout, v => spec.Model.Dropout = v!.Value);
            Set(labelSmoothing, v => spec.Loss.LabelSmoothing = v!.Value);
            Set(seed, v => spec.Seed = v!.Value);
            Set(limitTrain, v => spec.Data.LimitTrain = v);
            Set(limitTest, v => spec.Data.LimitTest = v);
            Set(holdout, v => spec.Data.Holdout = v);
            if (parse.GetValue(augment)) ApplyStandardAugmentation(spec);
            if (parse.GetValue(pretrained) is { } weights)
                spec.Pretrained = new PretrainedSpec { Path = weights, FreezeBackbone = parse.GetValue(freeze) };
            else if (parse.GetValue(freeze))
                throw new Specs.SpecException("--freeze-backbone needs --pretrained FILE");
            if (parse.GetValue(noDownload)) spec.Data.Download = false;
            TrialSpecYaml.Validate(spec);

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
                spec = TrialSpecYaml.Parse(header.TrialYaml, resumeFrom);
                Set(dataDir, v => spec.Data.Dir = v);
                if (parse.GetValue(output) is null) runDir = Path.GetDirectoryName(Path.GetFullPath(resumeFrom))!;
            }

            var data = console.LoadData(spec.Data, spec.Seed, ct);
            using var session = resumeFrom is null
                ? new TrainingSession(spec, data, dev, runDir, console)
                : TrainingSession.Resume(resumeFrom, data, dev, runDir, console, parse.GetValue(epochs));
            if (session.PretrainedReport is { } report) console.ReportPretrained(report);
            var result = console.Run(session, ct);
            console.Summary(result, data.Info);
            return Task.FromResult(ExitCodes.Ok);
        });
        return command;
    }

    /// <summary>The seed tutorial's augmentation: padded random crop (1/8 of the side) and horizontal flip.</summary>
    private static void ApplyStandardAugmentation(TrialSpec spec)
    {
        if (spec.Data.Name is "imagefolder")
        {
            spec.Augment.RandomResizedCrop = true;
            spec.Augment.Flip = true;
            return;
        }
        var side = DatasetCatalog.Find(spec.Data.Name)?.Shape.Height ?? 32;
        spec.Augment.CropPadding = Math.Max(1, side / 8);
        spec.Augment.Flip = true;
    }
}

using System.CommandLine;
using Orchestrator.Cli.Output;
using Orchestrator.Worker.Native;
using Orchestrator.Worker.Training;

namespace Orchestrator.Cli.Commands;

/// <summary>`orch lr-find`: a learning-rate range test of one trial on this machine.</summary>
internal static class LrFindCommand
{
    public static Command Create()
    {
        var defaults = new LrRangeOptions();
        var trial = new TrialOptions(schedule: false);
        var startLr = new Option<double>("--start-lr") { Description = $"First learning rate of the ramp (default {defaults.StartLr:G}).", DefaultValueFactory = _ => defaults.StartLr, HelpName = "RATE" };
        var endLr = new Option<double>("--end-lr") { Description = $"Last learning rate of the ramp (default {defaults.EndLr:G}).", DefaultValueFactory = _ => defaults.EndLr, HelpName = "RATE" };
        var steps = new Option<int>("--steps") { Description = $"Optimiser steps (one batch each) from --start-lr to --end-lr, at least {LrRangeOptions.MinSteps} (default {defaults.Steps}).", DefaultValueFactory = _ => defaults.Steps, HelpName = "N" };
        var plot = new Option<string>("--plot") { Description = "Where to write the PNG of loss against learning rate (default lr-find.png).", DefaultValueFactory = _ => "lr-find.png", HelpName = "FILE" };
        var device = CommonOptions.Device();
        var libTorch = CommonOptions.LibTorchDir();
        var json = CommonOptions.Json();

        var command = new Command("lr-find",
            "Find a good learning rate: train a throwaway copy of the model for a few steps while the rate grows exponentially,\n" +
            "watch the smoothed loss, stop when it diverges, and suggest the rate of the lowest loss divided by 10.\n" +
            "Writes a plot of loss against learning rate. Nothing is saved besides the plot.\n" +
            "Example: orch lr-find --dataset fashion-mnist --model simple-cnn --limit-train 10000\n" +
            "    then: orch train --dataset fashion-mnist --model simple-cnn --lr <suggested>");
        trial.AddTo(command);
        foreach (var o in new Option[] { startLr, endLr, steps, plot, device, libTorch, json })
            command.Add(o);

        command.SetAction((parse, ct) =>
        {
            var options = new LrRangeOptions { StartLr = parse.GetValue(startLr), EndLr = parse.GetValue(endLr), Steps = parse.GetValue(steps) };
            // Before any data is loaded: a wrong range is a usage error, said at once.
            options.Validate();
            var spec = trial.Build(parse);
            var plotPath = Path.GetFullPath(parse.GetValue(plot)!);
            var console = new LrFindConsole(parse.GetValue(json));
            var training = new TrainingConsole(parse.GetValue(json));
            TorchRuntime.Initialize(parse.GetValue(libTorch));
            var dev = TorchRuntime.ResolveDevice(parse.GetValue(device));
            var data = training.LoadData(spec.Data, spec.Seed, ct);

            // The session only lends its model, data pipeline and loss; its folder is thrown away.
            var scratch = Directory.CreateTempSubdirectory("orch-lr-find-").FullName;
            try
            {
                LrRangeResult result;
                using (var session = new TrainingSession(spec, data, dev, scratch))
                {
                    if (session.PretrainedReport is { } report) training.ReportPretrained(report);
                    console.Start(spec.Model.Name, data.Info.Name, dev.ToString(), options);
                    result = console.Run(options.Steps, onStep => session.FindLearningRate(options, onStep, ct));
                }
                LrRangePlot.Save(result, plotPath);
                console.Summary(result, plotPath);
            }
            finally
            {
                Directory.Delete(scratch, recursive: true);
            }
            return Task.FromResult(ExitCodes.Ok);
        });
        return command;
    }
}

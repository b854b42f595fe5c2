using System.CommandLine;
using Orchestrator.Cli.Output;
using Orchestrator.Protocol.V1;
using Spectre.Console;
using static Orchestrator.Cli.Commands.SweepCommands;

namespace Orchestrator.Cli.Commands;

/// <summary>Commands that steer a sweep while it runs: pause, resume, extend, stop a trial.</summary>
internal static class SweepControlCommands
{
    public static IEnumerable<Command> Create() => [Pause(), Resume(), Extend(), Stop()];

    private static Command Pause()
    {
        var sweep = SweepArgument();
        var coordinator = CoordinatorOption();
        var json = CommonOptions.Json();
        var command = new Command("pause",
            "Pause a sweep: no trial of it starts until `orch resume`. Its running trials are stopped and go back to the queue; "
            + "they resume from their last checkpoint, so only the epoch in progress is trained again.\nExample: orch pause sw-1a2b3c4d")
        { sweep, coordinator, json };
        command.SetAction(async (parse, ct) =>
        {
            using var c = Connect(parse, coordinator);
            var s = await c.Client.PauseSweepAsync(new PauseSweepRequest { SweepId = parse.GetValue(sweep)! }, c.Call(ct));
            Print(s, parse.GetValue(json));
            return ExitCodes.Ok;
        });
        return command;
    }

    private static Command Resume()
    {
        var sweep = SweepArgument();
        var coordinator = CoordinatorOption();
        var json = CommonOptions.Json();
        var command = new Command("resume", "Resume a paused sweep: its trials are assigned to workers again.\nExample: orch resume sw-1a2b3c4d")
        { sweep, coordinator, json };
        command.SetAction(async (parse, ct) =>
        {
            using var c = Connect(parse, coordinator);
            var s = await c.Client.ResumeSweepAsync(new ResumeSweepRequest { SweepId = parse.GetValue(sweep)! }, c.Call(ct));
            Print(s, parse.GetValue(json));
            return ExitCodes.Ok;
        });
        return command;
    }

    private static Command Extend()
    {
        var sweep = SweepArgument();
        var coordinator = CoordinatorOption();
        var json = CommonOptions.Json();
        var trials = new Option<int?>("--trials")
        {
            Description = "How many trials to add to the sweep's budget (search.maxTrials). The search method draws them "
                          + "(random: more samples from the same seeded generator; tpe: from its model of the results so far).",
            HelpName = "N",
        };
        trials.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int?>() < 1) r.AddError("--trials must be 1 or more");
        });
        var epochs = new Option<int?>("--epochs")
        {
            Description = "The epochs every trial trains from now on (more than now). Pending and running trials train them; "
                          + "completed trials whose latest checkpoint was kept (the sweep's best few) train on from it; "
                          + "with early stopping, only the better of them do (ASHA keeps the best 1/reductionFactor).",
            HelpName = "N",
        };
        epochs.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int?>() < 1) r.AddError("--epochs must be 1 or more");
        });
        var command = new Command("extend",
            "Raise a sweep's budget: more trials (--trials) or more epochs per trial (--epochs). A sweep that completed is reopened; "
            + "a failed or cancelled sweep, or one that reached its target, cannot be extended, and a grid search cannot take more trials."
            + "\nExamples: orch extend sw-1a2b3c4d --trials 20\n          orch extend sw-1a2b3c4d --epochs 27")
        { sweep, trials, epochs, coordinator, json };
        command.Validators.Add(r =>
        {
            if ((r.GetValue(trials) is null) == (r.GetValue(epochs) is null)) r.AddError("give one of --trials N (more trials) and --epochs N (more epochs per trial)");
        });
        command.SetAction(async (parse, ct) =>
        {
            using var c = Connect(parse, coordinator);
            var request = new ExtendSweepRequest { SweepId = parse.GetValue(sweep)!, Trials = parse.GetValue(trials) ?? 0, Epochs = parse.GetValue(epochs) ?? 0 };
            var s = await c.Client.ExtendSweepAsync(request, c.Call(ct));
            Print(s, parse.GetValue(json));
            return ExitCodes.Ok;
        });
        return command;
    }

    private static Command Stop()
    {
        var trial = new Argument<string>("trial") { Description = "The trial's id (see `orch trials SWEEP`), e.g. sw-1a2b3c4d-t0003." };
        var coordinator = CoordinatorOption();
        var json = CommonOptions.Json();
        var command = new Command("stop",
            "Stop one trial early. It ends as \"stopped early\", keeps its checkpoint and metrics, counts as a result at the "
            + "epochs it trained, and frees its workers at once.\nExample: orch stop sw-1a2b3c4d-t0003")
        { trial, coordinator, json };
        command.SetAction(async (parse, ct) =>
        {
            using var c = Connect(parse, coordinator);
            var t = await c.Client.StopTrialAsync(new StopTrialRequest { TrialId = parse.GetValue(trial)! }, c.Call(ct));
            if (parse.GetValue(json)) Console.Out.WriteLine(SweepView.Json(t).ToJsonString());
            else AnsiConsole.MarkupLine($"trial {t.Id}: {SweepView.Label(t.State)} after epoch {t.Epoch} of {t.Epochs}");
            return ExitCodes.Ok;
        });
        return command;
    }

    private static void Print(Sweep s, bool json)
    {
        if (json) Console.Out.WriteLine(SweepView.Json(s).ToJsonString());
        else AnsiConsole.MarkupLine($"sweep {s.Id}: {SweepView.State(s.State)}, {s.TrialsTotal} trials ({s.TrialsPending} pending, {s.TrialsRunning} running), {s.Epochs} epochs per trial");
    }
}

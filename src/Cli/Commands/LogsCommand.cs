using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Grpc.Core;
using Orchestrator.Protocol.V1;

namespace Orchestrator.Cli.Commands;

/// <summary>`orch logs TRIAL [-f]`: what a trial printed while it trained, kept by the coordinator.</summary>
internal static class LogsCommand
{
    /// <summary>The bound the coordinator keeps per trial (Coordinator.Logs.TrialLogs.MaxLinesKept), for the help and the note.</summary>
    private const string KeptLines = "10,000";

    public static Command Create()
    {
        var trial = new Argument<string>("trial") { Description = "The trial's id, e.g. sw-1a2b3c4d-t0003 (see `orch trials SWEEP`)." };
        var follow = new Option<bool>("--follow", "-f")
        {
            Description = "Keep printing new lines as the trial writes them, until it ends (completed, failed, stopped or cancelled). " +
                          "Ctrl+C stops following, not the trial.",
        };
        var coordinator = SweepCommands.CoordinatorOption();
        var json = CommonOptions.Json();
        var command = new Command("logs",
            "What a trial printed while it trained: the worker and attempt, one line per epoch (losses, accuracies, learning rate, speed), " +
            $"checkpoints stored, and the error that ended it, if any. The coordinator keeps the last {KeptLines} lines of each trial, " +
            "over all its attempts; lines longer than 1,000 characters are cut.\n" +
            "Examples: orch logs sw-1a2b3c4d-t0003\n" +
            "          orch logs sw-1a2b3c4d-t0003 -f          (follow until the trial ends)")
        { trial, follow, coordinator, json };
        command.SetAction(async (parse, ct) =>
        {
            var id = parse.GetValue(trial)!;
            var sweepId = MetricsCommand.SweepOf(id)
                ?? throw new ArgumentException($"'{id}' is not a trial id (expected SWEEP-tNNNN, e.g. sw-1a2b3c4d-t0003; see `orch trials SWEEP`)");
            var following = parse.GetValue(follow);
            var jsonMode = parse.GetValue(json);
            using var c = SweepCommands.Connect(parse, coordinator);
            var request = new GetTrialLogRequest { SweepId = sweepId, TrialId = id, Follow = following };
            // Following has no deadline: a trial may train for hours.
            using var call = c.Client.GetTrialLog(request, following ? c.Stream(ct) : c.Call(ct));
            long lines = 0;
            await foreach (var chunk in call.ResponseStream.ReadAllAsync(ct))
            {
                if (chunk.Dropped > 0 && !jsonMode)
                    await Console.Error.WriteLineAsync($"({chunk.Dropped.ToString("N0", CultureInfo.InvariantCulture)} earlier line(s) dropped: the coordinator keeps the last {KeptLines} lines of a trial)");
                foreach (var line in chunk.Lines)
                {
                    lines++;
                    var time = line.Time?.ToDateTimeOffset();
                    if (jsonMode)
                        Console.Out.WriteLine(new JsonObject { ["type"] = "line", ["seq"] = line.Seq, ["time"] = time?.ToString("O", CultureInfo.InvariantCulture), ["text"] = line.Text }.ToJsonString());
                    else
                        Console.Out.WriteLine($"{time?.ToLocalTime().ToString("HH:mm:ss", CultureInfo.InvariantCulture) ?? "--:--:--"} {line.Text}");
                }
                // Lines show as they come when following into a pipe.
                if (following) await Console.Out.FlushAsync(ct);
            }
            if (jsonMode) Console.Out.WriteLine(new JsonObject { ["type"] = "summary", ["trial"] = id, ["lines"] = lines }.ToJsonString());
            else if (lines == 0) await Console.Error.WriteLineAsync($"no log lines for {id} yet (it has not started, or ran before its worker wrote logs); -f waits for them");
            return ExitCodes.Ok;
        });
        return command;
    }
}

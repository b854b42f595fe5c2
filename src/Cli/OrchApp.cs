using System.CommandLine;
using Orchestrator.Cli.Commands;

namespace Orchestrator.Cli;

/// <summary>The `orch` command tree and its error handling: one line per user error, never a stack trace.</summary>
public static partial class OrchApp
{
    public static RootCommand Build()
    {
        var root = new RootCommand(
            "Orchestrator: train image classifiers, one run or a whole hyperparameter sweep.\n" +
            "Start with: orch local examples/quickstart.yaml --workers 2 (a sweep on this machine)\n" +
            "        or: orch train --dataset fashion-mnist --model simple-cnn --epochs 1 (one run)");
        root.Add(LocalCommand.Create());
        root.Add(TrainCommand.Create());
        root.Add(EvalCommand.Create());
        root.Add(ExportCommand.Create());
        root.Add(LrFindCommand.Create());
        foreach (var c in SweepCommands.Create()) root.Add(c);
        foreach (var c in SweepControlCommands.Create()) root.Add(c);
        root.Add(TensorBoardCommand.Create());
        root.Add(PlotCommand.Create());
        root.Add(MetricsCommand.Create());
        root.Add(ServeCommands.Coordinator());
        root.Add(ServeCommands.Worker());
        return root;
    }

    /// <summary>The most useful parse error, in plain words: an unknown option or command beats "command missing".</summary>
    private static string DescribeParseErrors(ParseResult parse)
    {
        var messages = parse.Errors.Select(e => e.Message).ToList();
        var unrecognized = messages.FirstOrDefault(m => m.StartsWith("Unrecognized", StringComparison.Ordinal) && m.Contains("'-", StringComparison.Ordinal))
                           ?? messages.FirstOrDefault(m => m.StartsWith("Unrecognized", StringComparison.Ordinal));
        var message = unrecognized ?? messages[0];
        message = TypeName().Replace(message, m => m.Groups[1].Value switch
        {
            "Int32" or "Int64" => "as a whole number",
            "Double" or "Single" => "as a number",
            "Boolean" => "as true or false",
            var other => "as " + other,
        });
        // "Must be one of:" lists the choices on lines of their own: one line for the user.
        message = string.Join(' ', message.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries));
        return message.TrimEnd('.');
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"as expected type 'System\.(?:Nullable`1\[System\.)?(\w+)\]?'")]
    private static partial System.Text.RegularExpressions.Regex TypeName();

    public static async Task<int> RunAsync(string[] args)
    {
        var root = Build();
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0 && parse.Action is not System.CommandLine.Help.HelpAction)
        {
            var command = parse.CommandResult.Command;
            var path = command == root ? "orch" : "orch " + command.Name;
            await Console.Error.WriteLineAsync($"orch: error: {DescribeParseErrors(parse)} (see '{path} --help')");
            return ExitCodes.Usage;
        }
        var config = new InvocationConfiguration { EnableDefaultExceptionHandler = false };
        if (parse.CommandResult.Command is SignalHandlingCommand) config.ProcessTerminationTimeout = null;
        try
        {
            return await parse.InvokeAsync(config);
        }
        catch (Exception e) when (CliErrors.IsUserError(e))
        {
            await Console.Error.WriteLineAsync("orch: error: " + CliErrors.Describe(e));
            return CliErrors.ExitCode(e);
        }
        catch (OperationCanceledException)
        {
            await Console.Error.WriteLineAsync("orch: interrupted");
            return ExitCodes.Interrupted;
        }
    }
}

/// <summary>Exit codes of `orch`.</summary>
public static class ExitCodes
{
    public const int Ok = 0;
    /// <summary>The run itself failed (bad data, a corrupt checkpoint, a missing data set).</summary>
    public const int Failed = 1;
    /// <summary>The command line or a spec file is wrong.</summary>
    public const int Usage = 2;
    public const int Interrupted = 130;
}

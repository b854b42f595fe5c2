using Orchestrator.Data;
using Orchestrator.Specs;

namespace Orchestrator.Cli;

/// <summary>Which exceptions are the user's to fix, and how to say them in one line.</summary>
internal static class CliErrors
{
    public static bool IsUserError(Exception e) => e is SpecException or DataFormatException or DatasetNotFoundException
        or InvalidDataException or FileNotFoundException or DirectoryNotFoundException or ArgumentException
        or InvalidOperationException or UnauthorizedAccessException or IOException;

    public static int ExitCode(Exception e) => e is SpecException or ArgumentException ? ExitCodes.Usage : ExitCodes.Failed;

    public static string Describe(Exception e)
    {
        // Data errors raised on the loader thread arrive wrapped; the inner one names the file.
        while (e is InvalidDataException { InnerException: DataFormatException or InvalidDataException } w) e = w.InnerException!;
        var message = e.Message.ReplaceLineEndings(" ");
        return e is ArgumentException a && a.ParamName is not null
            ? message.Replace($" (Parameter '{a.ParamName}')", "", StringComparison.Ordinal)
            : message;
    }
}

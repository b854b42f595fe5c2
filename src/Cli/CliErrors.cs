using Orchestrator.Data;
using Orchestrator.Specs;
using Orchestrator.Worker.Checkpoints;

namespace Orchestrator.Cli;

/// <summary>Which exceptions are the user's to fix, and how to say them in one line.</summary>
internal static class CliErrors
{
    /// <summary>The coordinator address the current command talks to (for the unreachable message).</summary>
    public static string? CurrentAddress { get; set; }

    public static bool IsUserError(Exception e) => e is Grpc.Core.RpcException or SpecException or DataFormatException or DatasetNotFoundException
        or InvalidDataException or CheckpointFormatException or FileNotFoundException or DirectoryNotFoundException or ArgumentException
        or InvalidOperationException or UnauthorizedAccessException or IOException
        or Microsoft.Extensions.Options.OptionsValidationException;

    public static int ExitCode(Exception e) => e is SpecException or ArgumentException or Microsoft.Extensions.Options.OptionsValidationException
        or Grpc.Core.RpcException { StatusCode: Grpc.Core.StatusCode.InvalidArgument } ? ExitCodes.Usage : ExitCodes.Failed;

    public static string Describe(Exception e)
    {
        // Data errors raised on the loader thread arrive wrapped; the inner one names the file.
        while (e is InvalidDataException { InnerException: DataFormatException or InvalidDataException } w) e = w.InnerException!;
        if (e is Grpc.Core.RpcException rpc)
        {
            // An HTTP/1 endpoint (the metrics and health port, a web server) refuses HTTP/2.
            if (rpc.Status.Detail.Contains("HTTP_1_1_REQUIRED", StringComparison.Ordinal) || rpc.Status.Detail.Contains("protocol downgraded to HTTP/1", StringComparison.OrdinalIgnoreCase))
                return $"{CurrentAddress ?? "the address"} does not speak gRPC (it answers HTTP/1.1): is it the coordinator's metrics port? Give its gRPC port (--port, 5000 by default)";
            if (rpc.Status.Detail.Contains("The SSL connection could not be established", StringComparison.Ordinal))
                return $"no TLS connection to the coordinator at {CurrentAddress ?? "?"}: its certificate is not trusted (give its CA in ORCH_TLS_CA), names another host, or the port does not speak TLS";
            return rpc.StatusCode switch
            {
                // The coordinator answered, but its store did not (ExceptionInterceptor).
                Grpc.Core.StatusCode.Unavailable when rpc.Status.Detail.StartsWith("state store unavailable", StringComparison.Ordinal) =>
                    $"the coordinator at {CurrentAddress ?? "?"} cannot reach its state store ({rpc.Status.Detail}); it retries: check Redis",
                Grpc.Core.StatusCode.Unavailable or Grpc.Core.StatusCode.DeadlineExceeded =>
                    $"cannot reach the coordinator at {CurrentAddress ?? "?"} ({rpc.Status.Detail}); is `orch coordinator` running? (--coordinator URL or ORCH_COORDINATOR)",
                Grpc.Core.StatusCode.Unauthenticated => rpc.Status.Detail,
                _ => rpc.Status.Detail.ReplaceLineEndings(" "),
            };
        }
        // A bad setting found as the coordinator starts: each failure already names its setting.
        if (e is Microsoft.Extensions.Options.OptionsValidationException o) return string.Join("; ", o.Failures).ReplaceLineEndings(" ");
        var message = e.Message.ReplaceLineEndings(" ");
        return e is ArgumentException a && a.ParamName is not null
            ? message.Replace($" (Parameter '{a.ParamName}')", "", StringComparison.Ordinal)
            : message;
    }
}

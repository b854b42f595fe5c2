using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;

namespace Orchestrator.Configuration;

/// <summary>
/// The console log of the coordinator and the worker, in the format <c>Logging:Format</c> names
/// (<c>ORCH_LOG_FORMAT</c>, <c>--log-format</c>): <c>simple</c>, one line per entry for people,
/// or <c>json</c>, one JSON object per line (the built-in JSON console formatter) for log
/// collectors. Levels come from the usual <c>Logging:LogLevel</c> section.
/// </summary>
public static class ConsoleLogs
{
    /// <summary>The levels unless configured otherwise: the programs' own categories at Information, the rest at Warning.</summary>
    public static readonly IReadOnlyDictionary<string, string?> DefaultLevels = new Dictionary<string, string?>
    {
        ["Logging:LogLevel:Default"] = "Warning",
        ["Logging:LogLevel:Orchestrator"] = "Information",
        // A failed start (a port in use) is the command's one error line; the host's own log of it is a stack trace.
        ["Logging:LogLevel:Microsoft.Extensions.Hosting.Internal.Host"] = "Critical",
    };

    /// <summary>Replaces the logging providers with the console in the configured format.</summary>
    /// <exception cref="SettingException">An unknown format.</exception>
    public static ILoggingBuilder AddConsoleLogs(this ILoggingBuilder logging, IConfiguration configuration, IReadOnlyList<Setting> settings)
    {
        ArgumentNullException.ThrowIfNull(logging);
        ArgumentNullException.ThrowIfNull(configuration);
        var json = IsJson(configuration[Settings.LogFormatKey], settings);
        logging.ClearProviders();
        logging.AddConfiguration(configuration.GetSection("Logging"));
        return json
            ? logging.AddJsonConsole(o =>
            {
                o.UseUtcTimestamp = true;
                o.TimestampFormat = "yyyy-MM-dd'T'HH:mm:ss.fff'Z'";
                o.JsonWriterOptions = new System.Text.Json.JsonWriterOptions { Indented = false };
            })
            : logging.AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.TimestampFormat = "HH:mm:ss ";
            });
    }

    private static bool IsJson(string? format, IReadOnlyList<Setting> settings) => format?.Trim().ToLowerInvariant() switch
    {
        null or "" or "simple" => false,
        "json" => true,
        _ => throw new SettingException($"{Settings.Describe(settings, Settings.LogFormatKey)}: '{format}' is not a log format (simple or json)"),
    };
}

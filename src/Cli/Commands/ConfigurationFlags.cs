using System.CommandLine;
using Orchestrator.Configuration;

namespace Orchestrator.Cli.Commands;

/// <summary>
/// The flags of `orch coordinator` and `orch worker` as configuration: each flag the user gave
/// becomes its setting's key (<see cref="Settings"/>), the source that overrides every other.
/// Flags left out say nothing, so appsettings.json and environment variables still count.
/// </summary>
internal static class ConfigurationFlags
{
    public static Dictionary<string, string?> Given(ParseResult parse, IReadOnlyList<Setting> settings, Command command)
    {
        var given = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        foreach (var option in command.Options)
        {
            if (settings.FirstOrDefault(s => s.Flag == option.Name) is not { } setting) continue;
            if (parse.GetResult(option) is not { Implicit: false } result) continue;
            given[setting.Key] = result.Tokens.Count == 0 ? "true" : string.Join(',', result.Tokens.Select(t => t.Value));
        }
        return given;
    }

    public static Option<string?> LogFormat() => new("--log-format")
    {
        Description = "Log format: simple (one line per entry) or json (one JSON object per line, for log collectors). Also: ORCH_LOG_FORMAT.",
        HelpName = "simple|json",
    };
}

using System.Text.Json;

namespace Orchestrator.Cli.FunctionalTests;

/// <summary>`orch coordinator` and `orch worker` read appsettings.json, and can log JSON lines for log collectors.</summary>
public sealed class ServiceConfigurationTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("orch-svc-config-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void A_bad_value_in_appsettings_stops_the_worker_with_one_line_naming_the_setting()
    {
        File.WriteAllText(Path.Combine(_dir, "appsettings.json"), """{ "Worker": { "DataPort": "fifty" } }""");
        var line = OrchProcess.AssertOneLineError(OrchProcess.Run(_dir, "worker", "--coordinator", "http://127.0.0.1:1"), 2);
        Assert.Equal("orch: error: Worker:DataPort (--data-port): 'fifty' is not a whole number", line);
    }

    [Fact]
    public void A_bad_value_in_appsettings_stops_the_coordinator_with_one_line_naming_the_setting()
    {
        File.WriteAllText(Path.Combine(_dir, "appsettings.json"), """{ "Coordinator": { "MaxTrialAttempts": 0 } }""");
        var line = OrchProcess.AssertOneLineError(OrchProcess.Run(_dir, "coordinator", "--port", "0", "--gradient-port", "0", "--state-dir", Path.Combine(_dir, "state")), 2);
        Assert.Equal("orch: error: Coordinator:MaxTrialAttempts: must be from 1 to 1000", line);
    }

    [Fact]
    public async Task With_log_format_json_every_line_the_worker_logs_is_one_JSON_object()
    {
        // No coordinator on port 1: the worker logs its devices, then a warning per reconnection attempt.
        await using var worker = OrchService.Start(_dir, "worker", "--coordinator", "http://127.0.0.1:1", "--log-format", "json", "--work-dir", Path.Combine(_dir, "work"));
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (!worker.Output.Contains("\"EventId\":101", StringComparison.Ordinal) && DateTime.UtcNow < deadline && !worker.HasExited)
            await Task.Delay(100);
        await worker.KillAsync();
        var lines = worker.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.True(lines.Length >= 2, worker.Output);
        var entries = lines.Select(l =>
        {
            try
            {
                return JsonDocument.Parse(l).RootElement;
            }
            catch (JsonException e)
            {
                throw new Xunit.Sdk.XunitException($"not a JSON line: {l} ({e.Message})");
            }
        }).ToList();
        foreach (var entry in entries)
        {
            Assert.True(DateTimeOffset.TryParse(entry.GetProperty("Timestamp").GetString(), System.Globalization.CultureInfo.InvariantCulture, out _));
            Assert.False(string.IsNullOrEmpty(entry.GetProperty("Category").GetString()));
            Assert.False(string.IsNullOrEmpty(entry.GetProperty("Message").GetString()));
        }
        var retry = entries.First(e => e.GetProperty("EventId").GetInt32() == 101);
        Assert.Equal("Warning", retry.GetProperty("LogLevel").GetString());
        Assert.Equal("http://127.0.0.1:1", retry.GetProperty("State").GetProperty("Url").GetString());
        Assert.StartsWith("Coordinator http://127.0.0.1:1 unreachable", retry.GetProperty("Message").GetString());
    }
}

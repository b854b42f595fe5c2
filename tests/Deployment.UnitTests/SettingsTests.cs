using System.Reflection;
using Orchestrator.Cli;
using Orchestrator.Configuration;
using Orchestrator.Deployment.UnitTests.Rendering;

namespace Orchestrator.Deployment.UnitTests;

/// <summary>
/// The one list of settings (src/Shared/Configuration/Settings.cs) against what people and
/// deployments see: the chart and manifests set variables that reach a setting, every flag in
/// the list exists on its command, and docs/operations.md names every setting.
/// </summary>
public sealed class SettingsTests
{
    public static TheoryData<string> Programs => new() { "coordinator", "worker" };

    private static IReadOnlyList<Setting> Of(string program) => program == "coordinator" ? Settings.Coordinator : Settings.Worker;

    [Theory]
    [MemberData(nameof(Render.All), MemberType = typeof(Render))]
    public void Every_ORCH_variable_the_coordinator_container_gets_is_one_of_its_settings(string name)
    {
        var settings = Settings.Variables(Settings.Coordinator).ToHashSet();
        foreach (var e in Render.Get(name).Container("coordinator").Env.Where(e => e.Name.StartsWith("ORCH_", StringComparison.Ordinal)))
            Assert.True(settings.Contains(e.Name), $"{name}: the coordinator gets {e.Name}, which no setting reads (Settings.Coordinator)");
    }

    [Fact]
    public void Every_variable_constant_is_a_setting_or_read_where_data_sets_and_plots_are()
    {
        var variables = typeof(EnvironmentVariables).GetFields(BindingFlags.Public | BindingFlags.Static)
            .Where(f => f.IsLiteral).Select(f => (string)f.GetRawConstantValue()!).ToList();
        var settings = Settings.Variables(Settings.Coordinator.Concat(Settings.Worker)).ToHashSet();
        string[] elsewhere = [EnvironmentVariables.DataDir, EnvironmentVariables.DatasetMirror, EnvironmentVariables.PlotFont];
        Assert.All(variables, v => Assert.True(settings.Contains(v) || elsewhere.Contains(v), $"{v} is neither a setting nor read elsewhere"));
        Assert.All(Settings.Variables(Settings.Coordinator.Concat(Settings.Worker)), v => Assert.Contains(v, variables));
    }

    [Theory]
    [MemberData(nameof(Programs))]
    public void Every_flag_in_the_settings_is_an_option_of_its_command(string program)
    {
        var command = OrchApp.Build().Subcommands.Single(c => c.Name == program);
        var options = command.Options.Select(o => o.Name).ToHashSet();
        foreach (var s in Of(program).Where(s => s.Flag is not null))
            Assert.True(options.Contains(s.Flag!), $"orch {program} has no {s.Flag} (setting {s.Key})");
    }

    [Theory]
    [MemberData(nameof(Programs))]
    public void The_operations_guide_has_a_row_for_every_setting_with_its_variable_and_flag(string program)
    {
        var rows = File.ReadLines(Path.Combine(K8sTools.RepositoryRoot, "docs", "operations.md"))
            .Where(l => l.StartsWith("| `", StringComparison.Ordinal))
            .Select(l => l.Split('|').Select(c => c.Trim()).ToArray())
            .ToList();
        foreach (var s in Of(program))
        {
            var row = rows.FirstOrDefault(r => r[1] == $"`{s.Key}`");
            Assert.True(row is not null, $"docs/operations.md has no row for {s.Key}");
            Assert.Equal(s.Variable is null ? "" : $"`{s.Variable}`", row[2]);
            Assert.StartsWith(s.Flag is null ? "" : $"`{s.Flag}`", row[3], StringComparison.Ordinal);
            Assert.False(string.IsNullOrEmpty(row[5]), $"{s.Key} has no meaning in docs/operations.md");
        }
    }
}

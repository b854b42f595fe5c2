using Orchestrator.Coordinator.Configuration;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Orchestrator.Configuration;
using Orchestrator.Coordinator.Hosting;

namespace Orchestrator.Coordinator.UnitTests.Hosting;

/// <summary>The coordinator program's settings: one binding from defaults, appsettings.json, ORCH_* variables and flags.</summary>
public sealed class CoordinatorConfigurationTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("orch-config-");

    public void Dispose() => _dir.Delete(recursive: true);

    private async Task<WebApplication> Build(string? appsettings, Dictionary<string, string> environment, Dictionary<string, string?>? flags = null)
    {
        if (appsettings is not null) await File.WriteAllTextAsync(Path.Combine(_dir.FullName, "appsettings.json"), appsettings);
        return CoordinatorHost.Build(["--contentRoot", _dir.FullName], CoordinatorHost.ProgramDefaults, flags, name => environment.GetValueOrDefault(name));
    }

    [Fact]
    public async Task A_flag_beats_a_variable_which_beats_appsettings_which_beats_the_default()
    {
        var file = """{ "Listen": { "GrpcPort": 7001, "HttpPort": 7101, "GradientPort": "7201" }, "State": { "Dir": "/from/file" } }""";
        var environment = new Dictionary<string, string> { ["ORCH_GRPC_PORT"] = "7002", ["ORCH_HTTP_PORT"] = "7102" };
        await using var app = await Build(file, environment, new() { ["Listen:GrpcPort"] = "7003" });
        var listen = app.Services.GetRequiredService<IOptions<ListenSettings>>().Value;
        var state = app.Services.GetRequiredService<IOptions<StateSettings>>().Value;
        Assert.Equal(7003, listen.GrpcPort);          // flag over variable, file and default
        Assert.Equal(7102, listen.HttpPort);          // variable over file and default
        Assert.Equal(7201, listen.GradientSocketPort); // file over default
        Assert.Equal("/from/file", state.Dir);        // file over the program's default
        Assert.Equal("0.0.0.0", listen.Address);      // the program's default over the class's
        Assert.Equal(Path.Combine("/from/file", "checkpoints"), state.CheckpointRoot);
    }

    [Fact]
    public async Task Every_ORCH_variable_of_the_coordinator_reaches_its_setting()
    {
        var environment = new Dictionary<string, string>
        {
            ["ORCH_BIND"] = "10.0.0.5",
            ["ORCH_GRADIENT_PORT"] = "off",
            ["ORCH_REDIS"] = "redis:6379",
            ["ORCH_STATE_DIR"] = "/state",
            ["ORCH_CHECKPOINT_DIR"] = "/checkpoints",
            ["ORCH_DATA_DIR"] = "/data",
            ["ORCH_TOKEN"] = "s3cret",
        };
        await using var app = await Build(null, environment);
        var listen = app.Services.GetRequiredService<IOptions<ListenSettings>>().Value;
        var state = app.Services.GetRequiredService<IOptions<StateSettings>>().Value;
        Assert.Equal("10.0.0.5", listen.Address);
        Assert.Null(listen.GradientSocketPort);
        Assert.Equal("redis:6379", state.Redis);
        Assert.Equal("/state", state.Dir);
        Assert.Equal("/checkpoints", state.CheckpointRoot);
        Assert.Equal("/data", app.Services.GetRequiredService<IOptions<DataSettings>>().Value.Dir);
        Assert.Equal("s3cret", app.Services.GetRequiredService<IOptions<CoordinatorOptions>>().Value.AuthToken);
    }

    [Theory]
    [InlineData("ORCH_GRPC_PORT", "five thousand", "Listen:GrpcPort (ORCH_GRPC_PORT, --port): 'five thousand' is not a whole number")]
    [InlineData("ORCH_HTTP_PORT", "70000", "Listen:HttpPort (ORCH_HTTP_PORT, --http-port): must be a port number from 0 to 65535")]
    [InlineData("ORCH_GRADIENT_PORT", "of", "Listen:GradientPort (ORCH_GRADIENT_PORT, --gradient-port): 'of' is neither a port number from 0 to 65535 nor off")]
    [InlineData("ORCH_BIND", "localhost:5000", "Listen:Address (ORCH_BIND, --bind): 'localhost:5000' is not an IP address (e.g. 127.0.0.1, or 0.0.0.0 for every interface)")]
    [InlineData("ORCH_LOG_FORMAT", "xml", "Logging:Format (ORCH_LOG_FORMAT, --log-format): 'xml' is not a log format (simple or json)")]
    public async Task A_bad_value_stops_the_start_with_one_line_naming_the_setting(string variable, string value, string expected)
    {
        var environment = new Dictionary<string, string> { [variable] = value, ["ORCH_STATE_DIR"] = _dir.FullName };
        var e = await Record.ExceptionAsync(async () =>
        {
            // Free ports for whatever is not under test, should the start wrongly go ahead.
            var flags = new Dictionary<string, string?> { ["Listen:GrpcPort"] = "0", ["Listen:HttpPort"] = "", ["Listen:GradientPort"] = "0" };
            flags.Remove(Settings.Coordinator.Single(s => s.Variable == variable).Key);
            await using var app = await Build(null, environment, flags);
            await app.StartAsync();
            await app.StopAsync();
        });
        Assert.NotNull(e);
        Assert.Equal(expected, CoordinatorHost.SettingError(e));
    }

    [Fact]
    public async Task A_lease_timeout_within_the_heartbeat_interval_is_refused_at_start()
    {
        var file = """{ "Coordinator": { "LeaseTimeout": "00:00:01", "HeartbeatInterval": "00:00:02" } }""";
        var e = await Record.ExceptionAsync(async () =>
        {
            await using var app = await Build(file, new() { ["ORCH_STATE_DIR"] = _dir.FullName }, new() { ["Listen:GrpcPort"] = "0", ["Listen:HttpPort"] = "", ["Listen:GradientPort"] = "0" });
            await app.StartAsync();
            await app.StopAsync();
        });
        Assert.NotNull(e);
        Assert.Equal("Coordinator:LeaseTimeout (--lease-timeout): must be longer than the heartbeat interval (00:00:02), or every lease expires between heartbeats",
            CoordinatorHost.SettingError(e));
    }
}

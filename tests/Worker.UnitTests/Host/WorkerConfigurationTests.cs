using Orchestrator.Configuration;
using Orchestrator.Worker.Host;

namespace Orchestrator.Worker.UnitTests.Host;

/// <summary>`orch worker`'s settings: one binding from defaults, appsettings.json, ORCH_* variables and flags.</summary>
public sealed class WorkerConfigurationTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("orch-worker-config-");

    public void Dispose() => _dir.Delete(recursive: true);

    private (WorkerAgentOptions Agent, WorkerServiceSettings Service) Bind(string? appsettings, Dictionary<string, string> environment, Dictionary<string, string?> flags)
    {
        var file = Path.Combine(_dir.FullName, "appsettings.json");
        if (appsettings is not null) File.WriteAllText(file, appsettings);
        return WorkerConfiguration.Bind(WorkerConfiguration.Build(flags, name => environment.GetValueOrDefault(name), file));
    }

    [Fact]
    public void A_flag_beats_a_variable_which_beats_appsettings_which_beats_the_default()
    {
        var file = """
            { "Worker": { "CoordinatorUrl": "http://from-file:5000", "AdvertiseHost": "file-host", "DrainTimeout": 120, "DataPort": 7000 } }
            """;
        var environment = new Dictionary<string, string> { ["ORCH_COORDINATOR"] = "http://from-env:5000", ["ORCH_ADVERTISE_HOST"] = "env-host" };
        var (agent, service) = Bind(file, environment, new() { ["Worker:CoordinatorUrl"] = "http://from-flag:5000" });
        Assert.Equal("http://from-flag:5000", agent.CoordinatorUrl); // flag over variable, file and default
        Assert.Equal("env-host", agent.AdvertiseHost);              // variable over file
        Assert.Equal(120, service.DrainTimeout);                    // file over default
        Assert.Equal(7000, agent.DataPort);
        Assert.Equal("auto", agent.Device);                         // default
        Assert.Equal("127.0.0.1", service.MetricsBind);
    }

    [Fact]
    public void Without_any_source_the_defaults_hold_and_data_is_fetched_from_the_coordinator()
    {
        var (agent, service) = Bind(null, [], []);
        Assert.Equal(WorkerAgentOptions.DefaultCoordinatorUrl, agent.CoordinatorUrl);
        Assert.True(agent.FetchData);
        Assert.Null(service.MetricsPort);
        Assert.Equal(600, service.DrainTimeout);
    }

    [Theory]
    [InlineData(null, "/shared", false)]   // a shared data folder: nothing to fetch
    [InlineData("true", "/shared", true)]  // unless asked
    [InlineData("false", null, false)]
    public void Data_is_fetched_unless_a_data_folder_is_given_or_it_is_turned_off(string? fetch, string? dataDir, bool fetches)
    {
        var flags = new Dictionary<string, string?>();
        if (fetch is not null) flags["Worker:FetchData"] = fetch;
        if (dataDir is not null) flags["Worker:DataDir"] = dataDir;
        Assert.Equal(fetches, Bind(null, [], flags).Agent.FetchData);
    }

    [Fact]
    public void The_token_and_libtorch_folder_come_from_their_ORCH_variables()
    {
        var (agent, _) = Bind(null, new() { ["ORCH_TOKEN"] = "s3cret", ["ORCH_LIBTORCH_DIR"] = "/opt/torch/lib" }, []);
        Assert.Equal("s3cret", agent.Token);
        Assert.Equal("/opt/torch/lib", agent.LibTorchDir);
    }

    [Theory]
    [InlineData("Worker:DrainTimeout", "ten", "Worker:DrainTimeout (--drain-timeout): 'ten' is not a whole number")]
    [InlineData("Worker:DrainTimeout", "-1", "Worker:DrainTimeout (--drain-timeout): must be from 0 to 604800 seconds")]
    [InlineData("Worker:DataPort", "65536", "Worker:DataPort (--data-port): must be a port number from 0 to 65535 (0: a free one)")]
    [InlineData("Worker:CoordinatorUrl", "coordinator:5000", "Worker:CoordinatorUrl (ORCH_COORDINATOR, --coordinator): 'coordinator:5000' is not an http:// or https:// address (e.g. http://coordinator:5000)")]
    [InlineData("Worker:FetchData", "yes", "Worker:FetchData (--fetch-data): 'yes' is not true or false")]
    [InlineData("Worker:MaxBackoff", "5s", "Worker:MaxBackoff: '5s' is not a duration (hh:mm:ss, e.g. 00:00:10)")]
    [InlineData("Worker:MetricsTlsKey", "/nonexistent/tls.key", "Worker:MetricsTlsCertificate (--metrics-tls-cert): the metrics port's TLS needs both a certificate (--metrics-tls-cert) and its key (--metrics-tls-key)")]
    public void A_bad_value_is_one_line_naming_the_setting(string key, string value, string expected)
    {
        var e = Assert.Throws<SettingException>(() => Bind(null, [], new() { [key] = value }));
        Assert.Equal(expected, e.Message);
    }

    [Fact]
    public void A_bad_value_in_appsettings_is_named_the_same_way()
    {
        var e = Assert.Throws<SettingException>(() => Bind("""{ "Worker": { "TorchThreads": 0 } }""", [], []));
        Assert.Equal("Worker:TorchThreads (--threads): must be from 1 to 4096", e.Message);
    }
}

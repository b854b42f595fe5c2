using System.Globalization;
using Orchestrator.TestSupport;

namespace Orchestrator.Cli.FunctionalTests;

/// <summary>
/// A sweep run to the end with `orch local` in a folder, then a real coordinator started on the
/// same embedded store, for commands that read a finished sweep over the API (`orch tensorboard`,
/// `orch plot`).
/// </summary>
internal sealed class FinishedSweep : IAsyncDisposable
{
    private readonly string _dir;
    private readonly OrchService _coordinator;

    private FinishedSweep(string dir, string id, string address, OrchService coordinator)
    {
        _dir = dir;
        Id = id;
        Address = address;
        _coordinator = coordinator;
    }

    public string Id { get; }
    public string Address { get; }

    /// <summary>Runs <paramref name="sweepYaml"/> with two workers in <paramref name="dir"/> and serves it.</summary>
    public static FinishedSweep Start(string dir, string sweepYaml)
    {
        File.WriteAllText(Path.Combine(dir, "sweep.yaml"), sweepYaml);
        var local = OrchProcess.Run(dir, "local", "sweep.yaml", "--workers", "2", "--state-dir", "state", "--json");
        Assert.True(local.ExitCode == 0, local.ToString());
        var id = local.LastJson.GetProperty("sweep").GetString()!;
        var port = RedisServer.FreePort();
        var coordinator = OrchService.Start(dir, "coordinator", "--state-dir", "state", "--port", port.ToString(CultureInfo.InvariantCulture),
            "--gradient-port", "0");
        return new FinishedSweep(dir, id, $"http://127.0.0.1:{port}", coordinator);
    }

    /// <summary>Runs `orch ARGS --coordinator ADDRESS`, again while the coordinator is still starting.</summary>
    public async Task<OrchProcess.Result> RunAsync(params string[] args)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            var r = OrchProcess.Run(_dir, [.. args, "--coordinator", Address]);
            if (r.ExitCode == 0 || !r.StdErr.Contains("cannot reach", StringComparison.Ordinal) || DateTime.UtcNow > deadline || _coordinator.HasExited)
                return r;
            await Task.Delay(500);
        }
    }

    public ValueTask DisposeAsync() => _coordinator.DisposeAsync();
}

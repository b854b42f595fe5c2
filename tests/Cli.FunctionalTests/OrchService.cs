using System.Diagnostics;
using System.Text;

namespace Orchestrator.Cli.FunctionalTests;

/// <summary>A long-running `orch` process (coordinator or worker) that a test can kill with SIGKILL.</summary>
public sealed class OrchService : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();

    private OrchService(Process process)
    {
        _process = process;
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_output) _output.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_output) _output.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public static OrchService Start(string workDir, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { WorkingDirectory = workDir, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "orch.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["ORCH_DATA_DIR"] = Path.Combine(workDir, "cache");
        return new OrchService(Process.Start(psi)!);
    }

    public bool HasExited => _process.HasExited;

    public string Output { get { lock (_output) return _output.ToString(); } }

    /// <summary>SIGKILL: no shutdown, no cleanup, like a crashed pod.</summary>
    public async Task KillAsync()
    {
        if (_process.HasExited) return;
        _process.Kill(entireProcessTree: true);
        await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
    }

    public async ValueTask DisposeAsync()
    {
        await KillAsync();
        _process.Dispose();
    }
}

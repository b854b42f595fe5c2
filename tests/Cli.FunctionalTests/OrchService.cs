using System.Diagnostics;
using System.Text;

namespace Orchestrator.Cli.FunctionalTests;

/// <summary>A long-running `orch` process (coordinator or worker) that a test can signal or kill with SIGKILL.</summary>
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

    public static OrchService Start(string workDir, params string[] args) => StartUnder([], workDir, args);

    /// <summary>
    /// Starts orch under <paramref name="launcher"/>, a command that runs the rest of its command
    /// line in another context and execs it (e.g. <c>ip netns exec NS</c>: the process is then orch itself).
    /// </summary>
    public static OrchService StartUnder(IReadOnlyList<string> launcher, string workDir, params string[] args)
    {
        var psi = new ProcessStartInfo(launcher.Count > 0 ? launcher[0] : "dotnet") { WorkingDirectory = workDir, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in launcher.Skip(1)) psi.ArgumentList.Add(a);
        if (launcher.Count > 0) psi.ArgumentList.Add("dotnet");
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "orch.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["ORCH_DATA_DIR"] = Path.Combine(workDir, "cache");
        return new OrchService(Process.Start(psi)!);
    }

    public bool HasExited => _process.HasExited;

    public string Output { get { lock (_output) return _output.ToString(); } }

    /// <summary>
    /// Sends a signal by name, as `kill -s NAME` does: TERM is what Kubernetes sends a pod it
    /// deletes, INT what Ctrl+C sends.
    /// </summary>
    public void Signal(string name)
    {
        var kill = new ProcessStartInfo("kill") { RedirectStandardError = true };
        foreach (var a in new[] { "-s", name, _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture) }) kill.ArgumentList.Add(a);
        using var p = Process.Start(kill)!;
        var error = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"kill -s {name} {_process.Id} failed: {error}");
    }

    /// <summary>Waits for the process to end by itself and returns its exit code; fails past <paramref name="timeout"/>.</summary>
    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        try
        {
            await _process.WaitForExitAsync().WaitAsync(timeout);
        }
        catch (TimeoutException)
        {
            throw new TimeoutException($"the process did not exit within {timeout}:\n{Output}");
        }
        return _process.ExitCode;
    }

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

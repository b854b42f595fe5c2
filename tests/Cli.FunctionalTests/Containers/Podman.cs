using Orchestrator.TestSupport;
using System.Diagnostics;

namespace Orchestrator.Cli.FunctionalTests.Containers;

/// <summary>Runs the podman command line. Where the machine needs them, the sandbox settings in
/// containers/podman-sandbox.conf apply (CONTAINERS_CONF, unless the caller set it).</summary>
internal static class Podman
{
    public sealed record Result(int ExitCode, string StdOut, string StdErr)
    {
        public override string ToString() => $"exit {ExitCode}\n{StdOut}{StdErr}";
    }

    public static string ConfigFile => Path.Combine(RepositoryRoot.Path, "containers", "podman-sandbox.conf");

    public static bool Installed => File.Exists("/usr/bin/podman") || (Environment.GetEnvironmentVariable("PATH") ?? "")
        .Split(':').Any(d => File.Exists(Path.Combine(d, "podman")));

    /// <summary>Runs podman and returns what it printed, whatever its exit code.</summary>
    public static async Task<Result> TryAsync(TimeSpan timeout, params string[] args)
    {
        var psi = new ProcessStartInfo("podman") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        if (string.IsNullOrEmpty(Environment.GetEnvironmentVariable("CONTAINERS_CONF"))) psi.Environment["CONTAINERS_CONF"] = ConfigFile;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await p.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"podman {string.Join(' ', args)} did not finish within {timeout}");
        }
        return new Result(p.ExitCode, await stdout, await stderr);
    }

    /// <summary>Runs podman and returns its standard output; a non-zero exit fails with what it printed.</summary>
    public static async Task<string> RunAsync(params string[] args)
    {
        var r = await TryAsync(TimeSpan.FromMinutes(5), args);
        if (r.ExitCode != 0) throw new InvalidOperationException($"podman {string.Join(' ', args)} failed: {r}");
        return r.StdOut.Trim();
    }

    public static async Task<bool> ImageExistsAsync(string image) =>
        (await TryAsync(TimeSpan.FromMinutes(1), "image", "exists", image)).ExitCode == 0;
}

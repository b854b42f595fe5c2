using System.Diagnostics;
using System.Text.Json;

namespace Orchestrator.Cli.FunctionalTests;

/// <summary>Runs the built `orch` program as a child process, as a user would.</summary>
public static class OrchProcess
{
    public sealed record Result(int ExitCode, string StdOut, string StdErr)
    {
        public JsonElement LastJson => JsonDocument.Parse(StdOut.TrimEnd().Split('\n')[^1]).RootElement;
        public override string ToString() => $"exit {ExitCode}\nstdout:\n{StdOut}\nstderr:\n{StdErr}";
    }

    public static Result Run(string workDir, params string[] args) => RunWith(workDir, new Dictionary<string, string>(), args);

    /// <summary>Runs orch with <paramref name="environment"/> added to its environment (ORCH_TOKEN, ORCH_TLS_CA, …).</summary>
    public static Result RunWith(string workDir, IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        var orch = Path.Combine(AppContext.BaseDirectory, "orch.dll");
        var psi = new ProcessStartInfo("dotnet") { WorkingDirectory = workDir, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(orch);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["ORCH_DATA_DIR"] = Path.Combine(workDir, "cache"); // never touch the user's cache
        foreach (var (name, value) in environment) psi.Environment[name] = value;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"orch {string.Join(' ', args)} did not finish in 5 minutes");
        }
        return new Result(p.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>Asserts a user error: the given exit code and exactly one line on stderr, without a stack trace.</summary>
    public static string AssertOneLineError(Result r, int exitCode)
    {
        Assert.True(r.ExitCode == exitCode, r.ToString());
        var lines = r.StdErr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, "expected one line on stderr:\n" + r.StdErr);
        Assert.StartsWith("orch: error: ", lines[0]);
        Assert.DoesNotContain("   at ", r.StdErr);
        return lines[0];
    }

    /// <summary>
    /// Asserts a failed run of a command that reports progress on stderr first (the "data ..." line of
    /// orch train): the given exit code, no stack trace, and one error line, the last.
    /// </summary>
    public static string AssertErrorAfterProgress(Result r, int exitCode)
    {
        Assert.True(r.ExitCode == exitCode, r.ToString());
        Assert.DoesNotContain("   at ", r.StdErr);
        var lines = r.StdErr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Count(l => l.StartsWith("orch: error: ", StringComparison.Ordinal)) == 1, r.ToString());
        Assert.StartsWith("orch: error: ", lines[^1]);
        return lines[^1];
    }
}

using System.Diagnostics;

namespace Orchestrator.Interop.FunctionalTests;

/// <summary>Debian's Python 3 (python3-torch, python3-onnx), running the scripts beside the test assembly.</summary>
public static class Python
{
    /// <summary>/usr/bin/python3 (Debian's, where apt's python3-torch and python3-onnx live), or $ORCH_TEST_PYTHON.</summary>
    public static string Executable { get; } = Environment.GetEnvironmentVariable("ORCH_TEST_PYTHON") is { Length: > 0 } p ? p : "/usr/bin/python3";

    public sealed record Result(int ExitCode, string StdOut, string StdErr)
    {
        public string[] Lines => StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        public override string ToString() => $"exit {ExitCode}\nstdout:\n{StdOut}\nstderr:\n{StdErr}";
    }

    /// <summary>Runs a script from the test folder; fails the test (with its output) when it does not exit 0.</summary>
    public static Result Run(string script, params string[] args)
    {
        var psi = new ProcessStartInfo(Executable)
        {
            WorkingDirectory = AppContext.BaseDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, script));
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["OMP_NUM_THREADS"] = "2";
        Process p;
        try
        {
            p = Process.Start(psi)!;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"cannot run {Executable} ({e.Message}): apt-get install python3-torch python3-onnx (or run .ci/run)", e);
        }
        using (p)
        {
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            if (!p.WaitForExit(TimeSpan.FromMinutes(5)))
            {
                p.Kill(entireProcessTree: true);
                throw new TimeoutException($"{script} did not finish in 5 minutes");
            }
            var r = new Result(p.ExitCode, stdout.Result, stderr.Result);
            if (r.StdErr.Contains("No module named", StringComparison.Ordinal))
                Assert.Fail($"{Executable} lacks a module: apt-get install python3-torch python3-onnx (or run .ci/run)\n{r}");
            Assert.True(r.ExitCode == 0, $"{script} {string.Join(' ', args)} failed:\n{r}");
            return r;
        }
    }
}

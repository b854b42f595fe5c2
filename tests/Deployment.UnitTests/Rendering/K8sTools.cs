using System.Diagnostics;
using System.Text;

namespace Orchestrator.Deployment.UnitTests.Rendering;

/// <summary>
/// helm, kubectl and the schema packages that build/k8s-tools.sh installs. A missing tool fails the
/// test that needs it (never a skip): the checks it stands for would otherwise silently not run.
/// </summary>
public static class K8sTools
{
    /// <summary>Same default as build/k8s-tools.sh.</summary>
    public static string Directory { get; } =
        Environment.GetEnvironmentVariable("ORCH_K8S_TOOLS") is { Length: > 0 } dir ? dir
        : Path.Combine(Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } cache ? cache
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache"), "orchestrator", "k8s-tools");

    public static string Helm => Tool(Path.Combine(Directory, "bin", "helm"));
    public static string Kubectl => Tool(Path.Combine(Directory, "bin", "kubectl"));

    /// <summary>The folder holding node_modules with kubernetes-models (checked).</summary>
    public static string SchemaPackages => Directory.Length > 0 && System.IO.Directory.Exists(Path.Combine(Directory, "node_modules", "kubernetes-models"))
        ? Directory
        : throw Missing(Path.Combine(Directory, "node_modules", "kubernetes-models"));

    public static string RepositoryRoot => Orchestrator.TestSupport.RepositoryRoot.Path;

    private static string Tool(string path) => File.Exists(path) ? path : throw Missing(path);

    private static InvalidOperationException Missing(string path) => new(
        $"{path} is missing: run build/k8s-tools.sh (it installs helm, kubectl and the schema packages into " +
        $"{Directory}; set ORCH_K8S_TOOLS to use another folder). The chart and manifest checks cannot run without them.");

    /// <summary>Runs a program to completion (two minutes at most) and returns its exit code and output.</summary>
    public static ProcessResult Run(string program, params string[] args)
    {
        var start = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = RepositoryRoot,
        };
        foreach (var a in args) start.ArgumentList.Add(a);
        // helm keeps caches and plugins under HOME; a test must not depend on (or write to) a user's.
        var home = Path.Combine(Path.GetTempPath(), "orch-k8s-tests-home");
        start.Environment["HELM_CACHE_HOME"] = Path.Combine(home, "cache");
        start.Environment["HELM_CONFIG_HOME"] = Path.Combine(home, "config");
        start.Environment["HELM_DATA_HOME"] = Path.Combine(home, "data");
        start.Environment["KUBECONFIG"] = Path.Combine(home, "no-kubeconfig");
        using var process = Process.Start(start) ?? throw new InvalidOperationException("could not start " + program);
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (stdout) stdout.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (stderr) stderr.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!process.WaitForExit(TimeSpan.FromMinutes(2)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{Path.GetFileName(program)} {string.Join(' ', args)} ran for over two minutes");
        }
        process.WaitForExit(); // drains the output events
        return new ProcessResult(process.ExitCode, stdout.ToString(), stderr.ToString());
    }
}

public sealed record ProcessResult(int ExitCode, string Stdout, string Stderr)
{
    public string Output => Stdout + Stderr;

    public ProcessResult ShouldSucceed(string what)
    {
        Assert.True(ExitCode == 0, $"{what} exited with {ExitCode}:\n{Output}");
        return this;
    }
}

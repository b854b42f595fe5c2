using System.Diagnostics;

namespace Orchestrator.Cli.FunctionalTests.Network;

/// <summary>Runs the network tools (<c>ip</c>, <c>nft</c>, <c>tc</c>) and fails with what they said.</summary>
internal static class HostCommands
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(20);

    /// <summary>Runs <paramref name="args"/>; throws with the command line and its stderr when it fails.</summary>
    public static string Run(IReadOnlyList<string> args, string? stdin = null)
    {
        var (code, stdout, stderr) = TryRun(args, stdin);
        if (code != 0)
            throw new InvalidOperationException($"`{string.Join(' ', args)}` failed with exit code {code}: {stderr.Trim()}" +
                                                (stdin is null ? "" : $"\ninput:\n{stdin}"));
        return stdout;
    }

    /// <summary>Runs <paramref name="args"/> and returns what happened (for clean-up, where a failure is no news).</summary>
    public static (int Code, string StdOut, string StdErr) TryRun(IReadOnlyList<string> args, string? stdin = null)
    {
        var psi = new ProcessStartInfo(args[0])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = stdin is not null,
            UseShellExecute = false,
        };
        foreach (var a in args.Skip(1)) psi.ArgumentList.Add(a);
        Process p;
        try
        {
            p = Process.Start(psi)!;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException(
                $"{args[0]} could not be run ({e.Message}). The network-fault tests need iproute2 and nftables: apt-get install iproute2 nftables (or run .ci/run).", e);
        }
        using (p)
        {
            if (stdin is not null)
            {
                p.StandardInput.Write(stdin);
                p.StandardInput.Close();
            }
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            if (!p.WaitForExit(Limit))
            {
                p.Kill(entireProcessTree: true);
                throw new TimeoutException($"`{string.Join(' ', args)}` did not finish within {Limit}");
            }
            return (p.ExitCode, stdout.Result, stderr.Result);
        }
    }
}

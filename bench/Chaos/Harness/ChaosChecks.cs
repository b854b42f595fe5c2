using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;
using TrialStatus = Orchestrator.Coordinator.Domain.TrialStatus;
using Orchestrator.Coordinator.State.Redis;
using Orchestrator.Protocol.V1;

namespace Orchestrator.Bench.Chaos;

/// <summary>The invariants of a chaos run (<see cref="Invariant"/>), checked once its sweeps ended and every process is back.</summary>
public static partial class ChaosChecks
{
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(90);

    [GeneratedRegex(@"Trial (\S+) ended Completed")]
    private static partial Regex CompletedLine();

    internal static async Task<List<Violation>> CheckAsync(ChaosCluster cluster, IReadOnlyList<(string Id, int Trials)> sweeps, ChaosOptions o,
        ProgressMonitor monitor, CancellationToken ct)
    {
        var found = new List<Violation>();
        if (monitor.LongestStall > o.StallLimit || monitor.EndedEarly is not null)
            found.Add(new(Invariant.NoStall, $"longest time without progress {monitor.LongestStall.TotalSeconds:F0} s{(monitor.EndedEarly is { } why ? $" (run ended: {why})" : "")}"));

        // Completion lines the coordinators logged, over every coordinator process of the run: a
        // trial that ended Completed twice (say once before a restart, once after) shows twice.
        var completions = cluster.CoordinatorOutputs.SelectMany(o => CompletedLine().Matches(o)).GroupBy(m => m.Groups[1].Value)
            .ToDictionary(g => g.Key, g => g.Count());

        // The count means something only if the coordinators log completions at all.
        if (completions.Count == 0)
            found.Add(new(Invariant.CompletedOnce, "no coordinator logged a completed trial: completions cannot be counted"));

        await using var store = await RedisStateStore.ConnectAsync(cluster.Redis.Configuration, cluster.Prefix, ct).ConfigureAwait(false);
        foreach (var (id, expected) in sweeps)
        {
            var sweep = await ChaosRun.RetryAsync(() => cluster.Sweeps.GetSweepAsync(new GetSweepRequest { SweepId = id },
                deadline: DateTime.UtcNow.AddSeconds(10), cancellationToken: ct).ResponseAsync, CallTimeout, ct).ConfigureAwait(false);
            if (sweep.State != SweepState.Completed)
                found.Add(new(Invariant.CompletedOnce, $"sweep {sweep.Name} is {sweep.State} ({sweep.Message})"));
            var trials = await store.ListTrialsAsync(id, ct).ConfigureAwait(false);
            if (trials.Count != expected) found.Add(new(Invariant.CompletedOnce, $"sweep {sweep.Name} has {trials.Count} trials, expected {expected}"));
            foreach (var t in trials)
            {
                if (t.State != TrialStatus.Completed) found.Add(new(Invariant.CompletedOnce, $"trial {t.Id} is {t.State} ({t.Message})"));
                if (completions.GetValueOrDefault(t.Id) > 1) found.Add(new(Invariant.CompletedOnce, $"trial {t.Id} ended Completed {completions[t.Id]} times"));
                var points = await store.GetMetricsAsync(t.Id, ct).ConfigureAwait(false);
                var epochs = points.Select(p => p.Epoch).ToList();
                var steps = points.Select(p => p.Step).ToList();
                var increasing = steps.Zip(steps.Skip(1)).All(s => s.First < s.Second);
                if (t.State == TrialStatus.Completed && (!epochs.SequenceEqual(Enumerable.Range(1, o.Epochs)) || !increasing))
                    found.Add(new(Invariant.ContiguousSteps, $"trial {t.Id} (attempt {t.Attempt}): epochs [{string.Join(",", epochs)}] at steps [{string.Join(",", steps)}]"));
            }
            if (sweep.State == SweepState.Completed) found.AddRange(await BestCheckpointAsync(cluster, sweep, ct).ConfigureAwait(false));
        }
        return found;
    }

    /// <summary>Assignments beyond the first, over every trial: how often a fault took a trial from its workers.</summary>
    internal static async Task<int> ExtraAttemptsAsync(ChaosCluster cluster, IEnumerable<string> sweepIds, CancellationToken ct)
    {
        await using var store = await RedisStateStore.ConnectAsync(cluster.Redis.Configuration, cluster.Prefix, ct).ConfigureAwait(false);
        var extra = 0;
        foreach (var id in sweepIds) extra += (await store.ListTrialsAsync(id, ct).ConfigureAwait(false)).Sum(t => Math.Max(0, t.Attempt - 1));
        return extra;
    }

    // orch best --download, then orch eval of the file: its accuracy is the sweep's best metric (to 6 places).
    private static async Task<IEnumerable<Violation>> BestCheckpointAsync(ChaosCluster cluster, Sweep sweep, CancellationToken ct)
    {
        var file = Path.Combine(cluster.Directory, $"best-{sweep.Id}.ckpt");
        var best = await OrchAsync(cluster.Directory, ["best", sweep.Id, "--coordinator", cluster.Address, "--download", file, "--json"], retryUnreachable: true, ct).ConfigureAwait(false);
        if (best.ExitCode != 0) return [new(Invariant.BestCheckpoint, $"orch best {sweep.Name}: exit {best.ExitCode}: {best.StdErr.Trim()}")];
        var eval = await OrchAsync(cluster.Directory, ["eval", "--checkpoint", file, "--json"], retryUnreachable: false, ct).ConfigureAwait(false);
        if (eval.ExitCode != 0) return [new(Invariant.BestCheckpoint, $"orch eval of {sweep.Name}'s best: exit {eval.ExitCode}: {eval.StdErr.Trim()}")];
        var accuracy = JsonDocument.Parse(eval.StdOut.TrimEnd().Split('\n')[^1]).RootElement.GetProperty("accuracy").GetDouble();
        return Math.Round(accuracy, 6) == Math.Round(sweep.BestMetric, 6) ? [] :
            [new(Invariant.BestCheckpoint, $"{sweep.Name}: best checkpoint evaluates to {accuracy:F6}, the sweep reports {sweep.BestMetric:F6} (trial {sweep.BestTrialId})")];
    }

    private sealed record OrchResult(int ExitCode, string StdOut, string StdErr);

    private static async Task<OrchResult> OrchAsync(string dir, string[] args, bool retryUnreachable, CancellationToken ct)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var psi = new ProcessStartInfo("dotnet") { WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true };
            psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "orch.dll"));
            foreach (var a in args) psi.ArgumentList.Add(a);
            psi.Environment["ORCH_DATA_DIR"] = Path.Combine(dir, "cache");
            using var p = Process.Start(psi)!;
            var stdout = p.StandardOutput.ReadToEndAsync(ct);
            var stderr = p.StandardError.ReadToEndAsync(ct);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(TimeSpan.FromMinutes(2));
            try
            {
                await p.WaitForExitAsync(timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                p.Kill(entireProcessTree: true);
                return new(-1, "", $"orch {string.Join(' ', args)} did not finish in 2 minutes");
            }
            var r = new OrchResult(p.ExitCode, await stdout.ConfigureAwait(false), await stderr.ConfigureAwait(false));
            if (r.ExitCode == 0 || !retryUnreachable || !r.StdErr.Contains("cannot reach", StringComparison.Ordinal) || clock.Elapsed > CallTimeout) return r;
            await Task.Delay(500, ct).ConfigureAwait(false);
        }
    }
}

using System.Diagnostics;
using System.Globalization;
using Grpc.Core;
using Orchestrator.Protocol.V1;

namespace Orchestrator.Bench.Chaos;

/// <summary>
/// One chaos run: a cluster, two sweeps submitted at once (a grid of two one-worker trials, and
/// one data-parallel trial on two workers that may resume on one), then SIGKILLs of the chosen
/// kind at random moments, each target started again after a random downtime, until the sweeps
/// end or <see cref="ChaosOptions.MaxKills"/> kills were made. Then <see cref="ChaosChecks"/>.
/// Every random choice comes from one generator seeded with <see cref="ChaosOptions.Seed"/>.
/// </summary>
public static class ChaosRun
{
    /// <summary>The sweeps of a run: name, expected trials, text.</summary>
    internal static IReadOnlyList<(string Name, int Trials, string Yaml)> Sweeps(ChaosOptions o)
    {
        var data = FormattableString.Invariant($"data: {{ name: fashion-mnist, limitTrain: {o.LimitTrain}, limitTest: {o.LimitTest} }}");
        var epochs = o.Epochs.ToString(CultureInfo.InvariantCulture);
        return
        [
            ("chaos-grid", 2, $$"""
                name: chaos-grid
                {{data}}
                model: { name: simple-cnn }
                trial: { epochs: {{epochs}}, batchSize: 32, optimizer: { name: sgd, momentum: 0.9 } }
                parameters:
                  optimizer.lr: { values: [0.02, 0.05] }
                search: { method: grid, parallelTrials: 2 }
                objective: { metric: val_accuracy, goal: maximize }
                """),
            ("chaos-data-parallel", 1, $$"""
                name: chaos-data-parallel
                {{data}}
                model: { name: simple-cnn }
                trial: { epochs: {{epochs}}, batchSize: 32, optimizer: { name: sgd, momentum: 0.9 } }
                parameters:
                  optimizer.lr: { values: [0.03] }
                search: { method: grid }
                objective: { metric: val_accuracy, goal: maximize }
                resources: { workers: 2, minWorkers: 1 }
                """),
        ];
    }

    /// <summary>Runs once and checks the invariants; <paramref name="progress"/> hears each kill and restart.</summary>
    public static async Task<ChaosResult> RunAsync(ChaosOptions options, Action<string>? progress, CancellationToken ct)
    {
        var random = new Random(options.Seed);
        var clock = Stopwatch.StartNew();
        var cluster = await ChaosCluster.StartAsync(options.Workers, options.MaxKills + 1, ct, options.LeaseSeconds).ConfigureAwait(false);
        var keep = false;
        try
        {
            var sweeps = Sweeps(options);
            var ids = new List<(string Id, int Trials)>();
            foreach (var (name, trials, yaml) in sweeps)
            {
                var submitted = await RetryAsync(() => cluster.Sweeps.SubmitSweepAsync(new SubmitSweepRequest { SpecYaml = yaml, FileName = name + ".yaml" },
                    deadline: DateTime.UtcNow.AddSeconds(10), cancellationToken: ct).ResponseAsync, TimeSpan.FromSeconds(90), ct).ConfigureAwait(false);
                ids.Add((submitted.Id, trials));
            }

            var monitor = new ProgressMonitor(cluster, ids.Select(i => i.Id).ToList(), options);
            using var done = CancellationTokenSource.CreateLinkedTokenSource(ct);
            var watching = monitor.RunAsync(done, ct);
            var kills = await KillLoopAsync(cluster, options, random, progress, done.Token).ConfigureAwait(false);
            await watching.ConfigureAwait(false);
            var duration = clock.Elapsed;

            var violations = await ChaosChecks.CheckAsync(cluster, ids, options, monitor, ct).ConfigureAwait(false);
            var extra = await ChaosChecks.ExtraAttemptsAsync(cluster, ids.Select(i => i.Id), ct).ConfigureAwait(false);
            keep = violations.Count > 0 || options.KeepLogs;
            return new ChaosResult(options, kills, duration, monitor.LongestStall, extra, violations, keep ? cluster.WriteLogs() : null);
        }
        finally
        {
            await cluster.StopAsync(keepFolder: keep).ConfigureAwait(false);
        }
    }

    // Kills until the sweeps end (the monitor cancels `done`) or the kills are used up. Whatever
    // was killed is started again before the loop returns, so the checks see a whole cluster.
    private static async Task<int> KillLoopAsync(ChaosCluster cluster, ChaosOptions o, Random random, Action<string>? progress, CancellationToken done)
    {
        var kills = 0;
        while (kills < o.MaxKills && !done.IsCancellationRequested)
        {
            var uptime = o.MinUptime + (o.MaxUptime - o.MinUptime) * random.NextDouble();
            var kind = o.Kind == FaultKind.Mixed ? (FaultKind)random.Next(3) : o.Kind;
            var worker = random.Next(cluster.WorkerCount);
            var downtime = TimeSpan.FromSeconds(kind == FaultKind.Redis ? 1 + 7 * random.NextDouble() : 0.5 + 2.5 * random.NextDouble());
            try
            {
                await Task.Delay(uptime, done).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                break;
            }
            var target = kind == FaultKind.Worker ? $"worker w{worker + 1}" : kind.ToString().ToLowerInvariant();
            await cluster.KillAsync(kind, worker, CancellationToken.None).ConfigureAwait(false);
            kills++;
            progress?.Invoke(FormattableString.Invariant($"  kill {kills}: {target} after {uptime.TotalSeconds:F1} s, down {downtime.TotalSeconds:F1} s"));
            // The downtime is served even when the sweeps end meanwhile: the target always comes back.
            await Task.Delay(downtime, CancellationToken.None).ConfigureAwait(false);
            await cluster.RestartAsync(kind, worker, CancellationToken.None).ConfigureAwait(false);
        }
        return kills;
    }

    /// <summary>Calls until it answers (a restarting coordinator or Redis fails single calls), up to <paramref name="timeout"/>.</summary>
    internal static async Task<T> RetryAsync<T>(Func<Task<T>> call, TimeSpan timeout, CancellationToken ct)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                return await call().ConfigureAwait(false);
            }
            catch (RpcException e) when (e.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded or StatusCode.Internal && deadline.Elapsed < timeout)
            {
                await Task.Delay(300, ct).ConfigureAwait(false);
            }
        }
    }
}

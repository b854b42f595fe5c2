// The cost of one scheduler pass (TrialScheduler.PassAsync) against the size of the pending
// sweep: the same pass, in this process, on a real redis-server and on SQLite, with a sweep of
// 100 and of 100,000 pending trials and no free worker (every pass recomputes why the trials
// wait and scans for expired leases; a manual clock moves 3 s between passes so nothing is
// skipped). Every store call is counted through a proxy. For reference, the same run times one
// ListTrials of the sweep: the scheduler used to read every trial of every active sweep twice
// per pass.
//
//   dotnet run -c Release --project bench/SchedulerPass -- [--passes 30] [--sizes 100,100000]
using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Orchestrator.Coordinator.Domain;
using Orchestrator.Coordinator.Hosting;
using Orchestrator.Coordinator.Scheduling;
using Orchestrator.Coordinator.State;
using Orchestrator.Coordinator.State.Redis;
using Orchestrator.Coordinator.State.Sqlite;
using Orchestrator.Coordinator.Sweeps;
using Orchestrator.TestSupport;

var passes = 30;
int[] sizes = [100, 100_000];
for (var i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--passes": passes = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--sizes": sizes = [.. args[++i].Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture))]; break;
        default: throw new ArgumentException($"unknown argument {args[i]}");
    }
}

var workDir = Directory.CreateTempSubdirectory("orch-bench-pass-").FullName;
await using var redis = await RedisServer.StartAsync(CancellationToken.None);
Console.WriteLine($"passes {passes} per row (+3 warm-up), taken in turns across the rows so that machine noise hits all of them; no workers; redis-server {redis.Configuration} (appendonly, appendfsync always), SQLite WAL synchronous=FULL");
Console.WriteLine();
var setups = new List<Setup>();
try
{
    foreach (var size in sizes)
    {
        foreach (var storeName in new[] { "Redis", "SQLite" })
        {
            IStateStore store = storeName == "Redis"
                // A 100,000-trial sweep is one script of ~40 MB: give it time on a busy machine.
                ? await RedisStateStore.ConnectAsync(redis.Configuration + ",asyncTimeout=120000", $"bench{size}:", CancellationToken.None)
                : await SqliteStateStore.OpenAsync(Path.Combine(workDir, $"sqlite-{size}"), CancellationToken.None);
            setups.Add(await Setup.CreateAsync(storeName, store, size, workDir));
        }
    }
    for (var p = -3; p < passes; p++)
    {
        foreach (var setup in setups) await setup.PassAsync(record: p >= 0);
    }
    Console.WriteLine("| store | pending trials | pass median ms | pass p90 ms | store calls per pass | one ListTrials of the sweep, ms |");
    Console.WriteLine("|---|---|---|---|---|---|");
    foreach (var setup in setups) Console.WriteLine(await setup.RowAsync());
    Console.WriteLine();
    foreach (var storeName in new[] { "Redis", "SQLite" })
    {
        var small = setups.First(r => r.Store == storeName && r.Size == sizes.Min()).Median;
        var large = setups.First(r => r.Store == storeName && r.Size == sizes.Max()).Median;
        Console.WriteLine($"{storeName}: pass with {sizes.Max():N0} pending / pass with {sizes.Min():N0} pending = {large / small:F2}");
    }
}
finally
{
    foreach (var setup in setups) await setup.DisposeAsync();
    try { Directory.Delete(workDir, recursive: true); } catch (IOException) { }
}

static class BenchSpec
{
    public static string Spec(int trials) => $$"""
    name: bench-pass
    data: { name: synthetic, imageSize: 32 }
    model: { name: simple-cnn }
    trial: { epochs: 1 }
    parameters:
      optimizer.lr: { distribution: log-uniform, min: 0.0001, max: 0.1 }
    search: { method: random, maxTrials: {{trials}}, parallelTrials: 8, seed: 1 }
    objective: { metric: val_accuracy, goal: maximize }
    """;
}

/// <summary>One store with one pending sweep, its coordinator services and a scheduler over them.</summary>
sealed class Setup : IAsyncDisposable
{
    private readonly IStateStore _inner;
    private readonly ServiceProvider _provider;
    private readonly TrialScheduler _scheduler;
    private readonly ManualClock _clock;
    private readonly string _sweepId;
    private readonly List<double> _times = [];
    private readonly List<long> _calls = [];

    private Setup(string store, int size, IStateStore inner, ServiceProvider provider, ManualClock clock, string sweepId)
    {
        Store = store;
        Size = size;
        _inner = inner;
        _provider = provider;
        _scheduler = provider.GetRequiredService<TrialScheduler>();
        _clock = clock;
        _sweepId = sweepId;
    }

    public string Store { get; }
    public int Size { get; }
    public double Median => _times.Order().ElementAt(_times.Count / 2);

    public static async Task<Setup> CreateAsync(string storeName, IStateStore inner, int size, string workDir)
    {
        var ct = CancellationToken.None;
        var clock = new ManualClock(DateTimeOffset.UtcNow);
        var sweepId = $"sw-bench{size}";
        var sweep = new SweepRecord { Id = sweepId, Name = "bench", State = SweepStatus.Running, SpecYaml = BenchSpec.Spec(size), CreatedAt = clock.GetUtcNow() };
        var trials = Enumerable.Range(0, size).Select(i => new TrialRecord
        {
            Id = $"{sweepId}-t{i:000000}",
            SweepId = sweepId,
            Index = i,
            Parameters = new Dictionary<string, string> { ["optimizer.lr"] = "0.01" },
            TrialYaml = "epochs: 1\n",
            Epochs = 1,
            CreatedAt = clock.GetUtcNow(),
        }).ToList();
        await inner.CreateSweepAsync(sweep, trials, ct);

        var services = new ServiceCollection();
        services.AddLogging(b => b.SetMinimumLevel(LogLevel.Warning));
        var stateDir = Path.Combine(workDir, $"state-{storeName}-{size}");
        services.AddSingleton<IConfiguration>(new ConfigurationBuilder()
            .AddInMemoryCollection(new Dictionary<string, string?> { ["State:Dir"] = stateDir }).Build());
        services.AddCoordinatorServices();
        services.AddSingleton<IStateStore>(CountingStore.Wrap(inner));
        services.AddSingleton<TimeProvider>(clock);
        var provider = services.BuildServiceProvider();
        await provider.GetRequiredService<SweepManager>().RecoverAsync(ct);
        var setup = new Setup(storeName, size, inner, provider, clock, sweepId);
        clock.Advance(TimeSpan.FromHours(1)); // past the start-up grace: every pass scans leases
        return setup;
    }

    public async Task PassAsync(bool record)
    {
        _clock.Advance(TimeSpan.FromSeconds(3));
        var before = CountingStore.Calls;
        var sw = Stopwatch.StartNew();
        await _scheduler.PassAsync(CancellationToken.None);
        sw.Stop();
        if (!record) return;
        _times.Add(sw.Elapsed.TotalMilliseconds);
        _calls.Add(CountingStore.Calls - before);
    }

    public async Task<string> RowAsync()
    {
        var waiting = _provider.GetRequiredService<PendingReasons>().Counts().Sum(c => c.Count);
        if (waiting != Size) throw new InvalidOperationException($"{Store}: {waiting} trials have a pending reason, expected {Size}");
        var list = Stopwatch.StartNew();
        var listed = await _inner.ListTrialsAsync(_sweepId, CancellationToken.None);
        var listMs = list.Elapsed.TotalMilliseconds;
        if (listed.Count != Size) throw new InvalidOperationException("unexpected listing");
        var sorted = _times.Order().ToList();
        return $"| {Store} | {Size:N0} | {Median:F2} | {sorted[(int)(sorted.Count * 0.9)]:F2} | {_calls.Average():F1} | {listMs:F0} |";
    }

    public async ValueTask DisposeAsync()
    {
        await _provider.DisposeAsync();
        if (_inner is IAsyncDisposable d) await d.DisposeAsync();
    }
}

/// <summary>A clock the benchmark moves by hand.</summary>
sealed class ManualClock(DateTimeOffset start) : TimeProvider
{
    private DateTimeOffset _now = start;
    public override DateTimeOffset GetUtcNow() => _now;
    public void Advance(TimeSpan by) => _now += by;
}

/// <summary>Counts every call made to the store it wraps.</summary>
#pragma warning disable CA1852 // DispatchProxy derives a class from it at run time: it cannot be sealed.
class CountingStore : DispatchProxy
#pragma warning restore CA1852
{
    private static long _calls;
    private IStateStore _inner = null!;

    public static long Calls => Interlocked.Read(ref _calls);

    public static IStateStore Wrap(IStateStore inner)
    {
        var proxy = Create<IStateStore, CountingStore>();
        ((CountingStore)(object)proxy)._inner = inner;
        return proxy;
    }

    protected override object? Invoke(MethodInfo? targetMethod, object?[]? args)
    {
        Interlocked.Increment(ref _calls);
        try
        {
            return targetMethod!.Invoke(_inner, args);
        }
        catch (TargetInvocationException e) when (e.InnerException is not null)
        {
            throw e.InnerException;
        }
    }
}

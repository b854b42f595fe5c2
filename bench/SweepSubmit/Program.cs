// Time to accept and persist a 10,000-point grid through the real SubmitSweep call, on a real
// coordinator (Kestrel on loopback, HTTP/2), with the Redis store (a real redis-server started
// here) and with the SQLite store, side by side in one run. Rounds alternate between the two
// stores so machine noise hits both; the table shows medians and the ratio Redis / SQLite.
// ListTrials of the same sweep is timed too (the client call that returns all 10,000 trials).
//
//   dotnet run -c Release --project bench/SweepSubmit -- [--rounds N] [--grid 10] [--cancel]
using System.Diagnostics;
using System.Globalization;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Orchestrator.Coordinator.Hosting;
using Orchestrator.Protocol.V1;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Orchestrator.Sweeps;
using Orchestrator.TestSupport;
using Orchestrator.Trials;

var rounds = 5;
var side = 10;
var cancel = false;
for (var i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--rounds": rounds = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--grid": side = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--cancel": cancel = true; break;
        default: throw new ArgumentException($"unknown argument {args[i]}");
    }
}
var points = side * side * side * side;

var workDir = Directory.CreateTempSubdirectory("orch-bench-submit-").FullName;
await using var redis = await RedisServer.StartAsync(CancellationToken.None);
var stores = new List<Store>();
try
{
    stores.Add(await Store.StartAsync("Redis", new CoordinatorHostSettings
    {
        GrpcPort = 0,
        Redis = redis.Configuration,
        RedisPrefix = "bench",
        StateDir = Path.Combine(workDir, "redis-coordinator"),
        LogLevel = LogLevel.Warning,
        // No workers connect here; a long lease timeout keeps the scheduler's lease scan (a
        // ListTrials of every active sweep each pass) out of what is measured.
        Configure = o => o.LeaseTimeout = TimeSpan.FromHours(1),
    }));
    stores.Add(await Store.StartAsync("SQLite", new CoordinatorHostSettings
    {
        GrpcPort = 0,
        Redis = null,
        StateDir = Path.Combine(workDir, "sqlite-coordinator"),
        LogLevel = LogLevel.Warning,
        Configure = o => o.LeaseTimeout = TimeSpan.FromHours(1),
    }));

    var yaml = Spec(side);
    Console.WriteLine($"grid {side}×{side}×{side}×{side} = {points:N0} trials, spec {yaml.Length} bytes, rounds {rounds} (+1 warm-up), redis-server {redis.Configuration} (appendonly, appendfsync always), SQLite WAL synchronous=FULL");
    Console.WriteLine();

    // Warm-up: JIT, connections, Lua script cache, SQLite pages.
    foreach (var s in stores) await s.RoundAsync(yaml, points, cancel, record: false);
    for (var r = 0; r < rounds; r++)
    {
        // Alternate which store goes first.
        foreach (var s in r % 2 == 0 ? stores : Enumerable.Reverse(stores)) await s.RoundAsync(yaml, points, cancel, record: true);
    }

    Console.WriteLine(cancel
        ? "| store | SubmitSweep median ms | min–max ms | trials/s | ListTrials median ms | ListTrials response bytes | CancelSweep median ms |"
        : "| store | SubmitSweep median ms | min–max ms | trials/s | ListTrials median ms | ListTrials response bytes |");
    Console.WriteLine(cancel ? "|---|---|---|---|---|---|---|" : "|---|---|---|---|---|---|");
    foreach (var s in stores)
    {
        var submit = Median(s.Submit);
        Console.Write($"| {s.Name} | {submit:F0} | {s.Submit.Min():F0}–{s.Submit.Max():F0} | {points / submit * 1000:N0} | {Median(s.List):F0} | {s.ListBytes:N0} |");
        Console.WriteLine(cancel ? $" {Median(s.Cancel):F0} |" : "");
    }
    Console.WriteLine();
    var (rd, sq) = (stores[0], stores[1]);
    Console.WriteLine($"ratio Redis / SQLite: SubmitSweep {Median(rd.Submit) / Median(sq.Submit):F2}, ListTrials {Median(rd.List) / Median(sq.List):F2}"
        + (cancel ? $", CancelSweep {Median(rd.Cancel) / Median(sq.Cancel):F2}" : ""));

    // Where SubmitSweep's time goes before any store is involved: the same steps SweepManager.SubmitAsync
    // takes, in this process, on one thread (median of 3).
    Console.WriteLine();
    Console.WriteLine("| step (in-process, no store) | median ms |");
    Console.WriteLine("|---|---|");
    var parse = new List<double>();
    var trialFor = new List<double>();
    var toYaml = new List<double>();
    for (var r = 0; r < 3; r++)
    {
        var sw = Stopwatch.StartNew();
        var spec = ValidatedSweep.Parse(yaml, "bench.yaml", new SweepLimits(100_000, 64));
        var created = Searcher.Create(spec).Start().OfType<CreateTrial>().ToList();
        parse.Add(sw.Elapsed.TotalMilliseconds);
        sw.Restart();
        var specs = created.Select(a => spec.TrialFor(a.Parameters)).ToList();
        trialFor.Add(sw.Elapsed.TotalMilliseconds);
        sw.Restart();
        var bytes = specs.Sum(t => TrialSpecYaml.Serialize(t).Length);
        toYaml.Add(sw.Elapsed.TotalMilliseconds);
        if (created.Count != points || bytes == 0) throw new InvalidOperationException("unexpected expansion");
    }
    Console.WriteLine($"| parse + validate the spec, expand the grid ({points:N0} CreateTrial) | {Median(parse):F0} |");
    Console.WriteLine($"| ValidatedSweep.TrialFor × {points:N0} (merge parameters into the trial) | {Median(trialFor):F0} |");
    Console.WriteLine($"| TrialSpecYaml.Serialize × {points:N0} (each trial's YAML: built at assignment now, no longer at submit) | {Median(toYaml):F0} |");
}
finally
{
    foreach (var s in stores) await s.DisposeAsync();
    try { Directory.Delete(workDir, recursive: true); } catch (IOException) { }
}

static double Median(List<double> xs)
{
    var s = xs.Order().ToList();
    return s.Count % 2 == 1 ? s[s.Count / 2] : (s[s.Count / 2 - 1] + s[s.Count / 2]) / 2;
}

// Four grid parameters of `side` values each; the base trial is a valid synthetic / simple-cnn trial.
static string Spec(int side)
{
    string Values(Func<int, string> f) => "[" + string.Join(", ", Enumerable.Range(0, side).Select(f)) + "]";
    var n = side * side * side * side;
    return $$"""
        name: bench-grid
        data: { name: synthetic, imageSize: 32 }
        model: { name: simple-cnn }
        trial:
          epochs: 2
          batchSize: 128
          optimizer: { name: sgd, momentum: 0.9 }
        parameters:
          optimizer.lr: { values: {{Values(i => (0.001 * (i + 1)).ToString("0.###", CultureInfo.InvariantCulture))}} }
          model.dropout: { values: {{Values(i => (0.05 * i).ToString("0.##", CultureInfo.InvariantCulture))}} }
          optimizer.weightDecay: { values: {{Values(i => (1e-5 * (i + 1)).ToString("0.#####", CultureInfo.InvariantCulture))}} }
          batchSize: { values: {{Values(i => (16 * (i + 1)).ToString(CultureInfo.InvariantCulture))}} }
        search: { method: grid, maxTrials: {{n}}, parallelTrials: 4 }
        objective: { metric: val_accuracy, goal: maximize }
        """;
}

sealed class Store : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly GrpcChannel _channel;
    private readonly Sweeps.SweepsClient _client;

    private Store(string name, WebApplication app, GrpcChannel channel)
    {
        Name = name;
        _app = app;
        _channel = channel;
        _client = new Sweeps.SweepsClient(channel);
    }

    public string Name { get; }
    public List<double> Submit { get; } = [];
    public List<double> List { get; } = [];
    public List<double> Cancel { get; } = [];
    public int ListBytes { get; private set; }

    public static async Task<Store> StartAsync(string name, CoordinatorHostSettings settings)
    {
        var app = CoordinatorHost.Build(settings);
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        var channel = GrpcChannel.ForAddress(address, new GrpcChannelOptions { MaxReceiveMessageSize = 64 * 1024 * 1024 });
        return new Store(name, app, channel);
    }

    public async Task RoundAsync(string yaml, int points, bool cancel, bool record)
    {
        var sw = Stopwatch.StartNew();
        var sweep = await _client.SubmitSweepAsync(new SubmitSweepRequest { SpecYaml = yaml, FileName = "bench.yaml" });
        var submitMs = sw.Elapsed.TotalMilliseconds;
        if (sweep.TrialsTotal != points) throw new InvalidOperationException($"{Name}: {sweep.TrialsTotal} trials, expected {points}");

        sw.Restart();
        var trials = await _client.ListTrialsAsync(new ListTrialsRequest { SweepId = sweep.Id });
        var listMs = sw.Elapsed.TotalMilliseconds;
        if (trials.Trials.Count != points) throw new InvalidOperationException($"{Name}: ListTrials returned {trials.Trials.Count}");
        ListBytes = trials.CalculateSize();

        // Cancelling keeps the next round's scheduler passes from walking this sweep.
        sw.Restart();
        if (cancel) await _client.CancelSweepAsync(new CancelSweepRequest { SweepId = sweep.Id });
        var cancelMs = sw.Elapsed.TotalMilliseconds;
        if (!record) return;
        Submit.Add(submitMs);
        List.Add(listMs);
        if (cancel) Cancel.Add(cancelMs);
        Console.WriteLine($"  {Name,-6} submit {submitMs,8:F0} ms   list {listMs,7:F0} ms" + (cancel ? $"   cancel {cancelMs,7:F0} ms" : ""));
    }

    public async ValueTask DisposeAsync()
    {
        _channel.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}

// A fleet of simulated workers against one coordinator running as its own process (the
// Coordinator program, Kestrel on loopback, HTTP/2), with Redis (a real redis-server started
// here) or SQLite as its store. Each worker opens its own connection and Connect stream, says
// Hello, is assigned one trial of a sweep with parallelTrials = workers, then heartbeats at the
// coordinator's interval and sends 10 MetricReports per second with increasing steps.
//
// Measured over a window after a warm-up:
//   * coordinator CPU: utime + stime of its process from /proc/<pid>/stat (and redis-server's,
//     and this load generator's own), as cores used;
//   * throughput: metric points that reached a WatchSweep stream per second;
//   * latency of a report: from just before the worker's WriteAsync of the MetricReport to the
//     moment its point (trial id, step) arrives on a WatchSweep stream held by this process. Both
//     ends read the same Stopwatch, so no clock skew. It includes the coordinator's whole
//     ReportMetric path (store writes) and the event fan-out.
//
//   dotnet run -c Release --project bench/WorkerFleet -- [--workers 200] [--seconds 30] [--warmup 5]
//       [--rate 10] [--objective-every N] [--store redis|sqlite|both]
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Grpc.Core;
using Grpc.Net.Client;
using Orchestrator.Protocol.V1;
using Orchestrator.TestSupport;

var workers = 200;
var seconds = 30.0;
var warmup = 5.0;
var rate = 10.0;
var objectiveEvery = 0;
var storeArg = "both";
for (var i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--workers": workers = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--seconds": seconds = double.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--warmup": warmup = double.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--rate": rate = double.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--objective-every": objectiveEvery = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--store": storeArg = args[++i]; break;
        default: throw new ArgumentException($"unknown argument {args[i]}");
    }
}

var coordinatorDll = Path.Combine(AppContext.BaseDirectory, "..", "..", "Orchestrator.Coordinator", "release", "Orchestrator.Coordinator.dll");
if (!File.Exists(coordinatorDll)) throw new FileNotFoundException("build the coordinator first (dotnet build -c Release)", coordinatorDll);

Console.WriteLine($"{workers} workers, {rate} reports/s each, objective in {(objectiveEvery == 0 ? "no" : $"every {objectiveEvery}th")} report, warm-up {warmup} s, window {seconds} s, {Environment.ProcessorCount} cores (load generator, coordinator and redis-server share them)");
Console.WriteLine();
var rows = new List<string>();
foreach (var store in storeArg == "both" ? new[] { "redis", "sqlite" } : [storeArg])
    rows.Add(await Fleet.RunAsync(store, coordinatorDll, workers, seconds, warmup, rate, objectiveEvery));
Console.WriteLine();
Console.WriteLine("| store | workers | reports/s sent | points/s seen by watcher | points lost | coordinator cores | % of machine | redis-server cores | load generator cores | latency p50 ms | p99 ms | max ms |");
Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|---|---|");
foreach (var r in rows) Console.WriteLine(r);

static class Fleet
{
    public static async Task<string> RunAsync(string store, string coordinatorDll, int workers, double seconds, double warmup, double rate, int objectiveEvery)
    {
        var stateDir = Directory.CreateTempSubdirectory("orch-bench-fleet-").FullName;
        RedisServer? redis = store == "redis" ? await RedisServer.StartAsync(CancellationToken.None) : null;
        var port = RedisServer.FreePort();
        var start = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(coordinatorDll);
        start.Environment["ORCH_BIND"] = "127.0.0.1";
        start.Environment["ORCH_GRPC_PORT"] = port.ToString(CultureInfo.InvariantCulture);
        start.Environment["ORCH_HTTP_PORT"] = RedisServer.FreePort().ToString(CultureInfo.InvariantCulture);
        start.Environment["ORCH_STATE_DIR"] = stateDir;
        if (redis is not null) start.Environment["ORCH_REDIS"] = redis.Configuration;
        start.Environment["Logging__LogLevel__Orchestrator"] = "Warning";
        using var coordinator = Process.Start(start)!;
        var log = new ConcurrentQueue<string>();
        coordinator.OutputDataReceived += (_, e) => { if (e.Data is not null) log.Enqueue(e.Data); };
        coordinator.ErrorDataReceived += (_, e) => { if (e.Data is not null) log.Enqueue(e.Data); };
        coordinator.BeginOutputReadLine();
        coordinator.BeginErrorReadLine();
        var redisPid = redis is null ? (int?)null : FindRedisPid(redis.Port);
        using var cts = new CancellationTokenSource();
        var tasks = new List<Task>();
        var channels = new List<GrpcChannel>();
        try
        {
            var address = $"http://127.0.0.1:{port}";
            var userChannel = GrpcChannel.ForAddress(address);
            channels.Add(userChannel);
            var sweeps = new Sweeps.SweepsClient(userChannel);
            await WaitReadyAsync(sweeps, coordinator, log);

            var submitted = await sweeps.SubmitSweepAsync(new SubmitSweepRequest { SpecYaml = Spec(workers), FileName = "fleet.yaml" });
            var clock = Stopwatch.StartNew();
            var sent = new ConcurrentDictionary<(string, long), long>();
            var measureFrom = long.MaxValue;
            var measureTo = long.MaxValue;
            var latencies = new ConcurrentBag<double>();
            long seenInWindow = 0, sentInWindow = 0;

            // The watcher: one WatchSweep stream, as `orch watch` holds it.
            var watch = sweeps.WatchSweep(new WatchSweepRequest { SweepId = submitted.Id }, cancellationToken: cts.Token);
            tasks.Add(Task.Run(async () =>
            {
                try
                {
                    await foreach (var e in watch.ResponseStream.ReadAllAsync(cts.Token))
                    {
                        if (e.EventCase != SweepEvent.EventOneofCase.Metric) continue;
                        var now = clock.ElapsedTicks;
                        if (sent.TryRemove((e.Metric.TrialId, e.Metric.Step), out var at) && at >= Volatile.Read(ref measureFrom) && at < Volatile.Read(ref measureTo))
                        {
                            latencies.Add((now - at) * 1000.0 / Stopwatch.Frequency);
                            Interlocked.Increment(ref seenInWindow);
                        }
                    }
                }
                catch (RpcException) when (cts.IsCancellationRequested) { }
                catch (OperationCanceledException) { }
            }));

            var assigned = 0;
            for (var w = 0; w < workers; w++)
            {
                // Each worker: its own HTTP/2 connection, as separate worker processes would have.
                var channel = GrpcChannel.ForAddress(address);
                channels.Add(channel);
                var id = $"bench-w{w:000}";
                tasks.Add(Task.Run(() => WorkerAsync(new WorkerGateway.WorkerGatewayClient(channel), id, rate, objectiveEvery, clock, sent,
                    () => Interlocked.Increment(ref assigned),
                    at => { if (at >= Volatile.Read(ref measureFrom) && at < Volatile.Read(ref measureTo)) Interlocked.Increment(ref sentInWindow); },
                    cts.Token)));
            }
            var deadline = Stopwatch.StartNew();
            while (Volatile.Read(ref assigned) < workers)
            {
                if (deadline.Elapsed > TimeSpan.FromSeconds(60)) throw new TimeoutException($"only {assigned} of {workers} workers got a trial:\n{string.Join('\n', log)}");
                await Task.Delay(100);
            }
            Console.WriteLine($"  {store}: {workers} workers assigned after {deadline.Elapsed.TotalSeconds:F1} s; warming up {warmup} s");
            await Task.Delay(TimeSpan.FromSeconds(warmup));

            var cpu0 = CpuSeconds(coordinator.Id);
            var redis0 = redisPid is { } rp0 ? CpuSeconds(rp0) : 0;
            var self0 = Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds;
            var t0 = clock.ElapsedTicks;
            Volatile.Write(ref measureTo, t0 + (long)(seconds * Stopwatch.Frequency));
            Volatile.Write(ref measureFrom, t0);
            await Task.Delay(TimeSpan.FromSeconds(seconds));
            var wall = (clock.ElapsedTicks - t0) / (double)Stopwatch.Frequency;
            var cpu = CpuSeconds(coordinator.Id) - cpu0;
            var redisCpu = redisPid is { } rp1 ? CpuSeconds(rp1) - redis0 : 0;
            var self = Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds - self0;
            // Let in-flight reports of the window arrive (up to 10 s), then stop.
            for (var i = 0; i < 100 && sent.Values.Any(at => at >= t0 && at < measureTo); i++) await Task.Delay(100);
            var lost = sent.Values.Count(at => at >= t0 && at < measureTo);

            var sorted = latencies.Order().ToArray();
            double P(double q) => sorted.Length == 0 ? double.NaN : sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(q * sorted.Length) - 1)];
            var cores = Environment.ProcessorCount;
            var row = $"| {(store == "redis" ? "Redis" : "SQLite")} | {workers} | {sentInWindow / wall:N0} | {seenInWindow / wall:N0} | {lost:N0} | {cpu / wall:F2} | {cpu / wall / cores * 100:F0} % | {(redisPid is null ? "–" : (redisCpu / wall).ToString("F2", CultureInfo.InvariantCulture))} | {self / wall:F2} | {P(0.5):F1} | {P(0.99):F1} | {(sorted.Length == 0 ? double.NaN : sorted[^1]):F1} |";
            Console.WriteLine("  " + row);
            return row;
        }
        finally
        {
            await cts.CancelAsync();
            try { await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromSeconds(10)); } catch (Exception) { }
            foreach (var c in channels) c.Dispose();
            if (!coordinator.HasExited) coordinator.Kill();
            await coordinator.WaitForExitAsync();
            if (redis is not null) await redis.DisposeAsync();
            try { Directory.Delete(stateDir, recursive: true); } catch (IOException) { }
        }
    }

    private static async Task WorkerAsync(WorkerGateway.WorkerGatewayClient client, string id, double rate, int objectiveEvery, Stopwatch clock,
        ConcurrentDictionary<(string, long), long> sent, Action onAssigned, Action<long> onSent, CancellationToken ct)
    {
        try
        {
            using var call = client.Connect(cancellationToken: ct);
            var gate = new SemaphoreSlim(1, 1); // one writer at a time on the request stream
            await call.RequestStream.WriteAsync(new WorkerMessage { Hello = new Hello { WorkerId = id, Name = id, Capabilities = new WorkerCapabilities { Device = "cpu", CpuCores = 1, Host = "bench" } } }, ct);
            if (!await call.ResponseStream.MoveNext(ct) || call.ResponseStream.Current.KindCase != CoordinatorMessage.KindOneofCase.Welcome)
                throw new InvalidOperationException($"{id}: no Welcome");
            var heartbeat = TimeSpan.FromMilliseconds(call.ResponseStream.Current.Welcome.HeartbeatIntervalMs);
            if (!await call.ResponseStream.MoveNext(ct) || call.ResponseStream.Current.KindCase != CoordinatorMessage.KindOneofCase.Assign)
                throw new InvalidOperationException($"{id}: no AssignTrial");
            var lease = call.ResponseStream.Current.Assign.Lease;
            onAssigned();
            // Drain whatever else the coordinator sends (a StopTrial would show up in its log).
            _ = Task.Run(async () => { try { while (await call.ResponseStream.MoveNext(ct)) { } } catch (Exception) { } }, ct);

            var hb = Task.Run(async () =>
            {
                using var timer = new PeriodicTimer(heartbeat);
                while (await timer.WaitForNextTickAsync(ct))
                {
                    var m = new WorkerMessage { Heartbeat = new Heartbeat() };
                    m.Heartbeat.Running.Add(lease);
                    await gate.WaitAsync(ct);
                    try { await call.RequestStream.WriteAsync(m, ct); } finally { gate.Release(); }
                }
            }, ct);

            // Start at a random phase so 200 workers do not report in lockstep.
            await Task.Delay(Random.Shared.Next((int)(1000 / rate)), ct);
            using var ticker = new PeriodicTimer(TimeSpan.FromSeconds(1 / rate));
            long step = 0;
            while (await ticker.WaitForNextTickAsync(ct))
            {
                step++;
                var point = new MetricPoint { TrialId = lease.TrialId, Step = step, Epoch = objectiveEvery > 0 ? (int)(step / objectiveEvery) : 0 };
                point.Values["train_loss"] = 2.3 / Math.Sqrt(step);
                point.Values["lr"] = 0.01;
                if (objectiveEvery > 0 && step % objectiveEvery == 0) point.Values["val_accuracy"] = Math.Min(0.89, 0.1 + step * 1e-4);
                var message = new WorkerMessage { Metric = new MetricReport { Lease = lease, Point = point } };
                await gate.WaitAsync(ct);
                try
                {
                    var at = clock.ElapsedTicks;
                    sent[(lease.TrialId, step)] = at;
                    onSent(at);
                    await call.RequestStream.WriteAsync(message, ct);
                }
                finally { gate.Release(); }
            }
            await hb;
        }
        catch (OperationCanceledException) { }
        catch (RpcException) when (ct.IsCancellationRequested) { }
    }

    private static async Task WaitReadyAsync(Sweeps.SweepsClient client, Process coordinator, ConcurrentQueue<string> log)
    {
        var sw = Stopwatch.StartNew();
        while (true)
        {
            if (coordinator.HasExited) throw new InvalidOperationException($"coordinator exited with {coordinator.ExitCode}:\n{string.Join('\n', log)}");
            try
            {
                await client.ListSweepsAsync(new ListSweepsRequest(), deadline: DateTime.UtcNow.AddSeconds(2));
                return;
            }
            catch (RpcException) when (sw.Elapsed < TimeSpan.FromSeconds(30))
            {
                await Task.Delay(200);
            }
        }
    }

    // utime + stime (fields 14 and 15 of /proc/<pid>/stat), in seconds; USER_HZ is 100 on Linux.
    private static double CpuSeconds(int pid)
    {
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return (long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) / 100.0;
    }

    // The redis-server child listening on this port (its command line reads "redis-server 127.0.0.1:PORT").
    private static int? FindRedisPid(int port)
    {
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid)) continue;
            try
            {
                var cmd = File.ReadAllText(Path.Combine(dir, "cmdline")).Replace('\0', ' ');
                if (cmd.StartsWith("redis-server", StringComparison.Ordinal) || cmd.Contains("/redis-server", StringComparison.Ordinal))
                    if (cmd.Contains($":{port}", StringComparison.Ordinal)) return pid;
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        return null;
    }

    private static string Spec(int workers)
    {
        var values = string.Join(", ", Enumerable.Range(1, workers).Select(i => (i * 1e-4).ToString("0.####", CultureInfo.InvariantCulture)));
        return $$"""
            name: bench-fleet
            data: { name: synthetic, imageSize: 32 }
            model: { name: simple-cnn }
            trial:
              epochs: 1000
              batchSize: 128
            parameters:
              optimizer.lr: { values: [{{values}}] }
            search: { method: grid, maxTrials: {{workers}}, parallelTrials: {{workers}} }
            objective: { metric: val_accuracy, goal: maximize }
            """;
    }
}

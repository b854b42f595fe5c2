// All-reduce time of gradient-sized buffers: our ring (TCP and Unix sockets, fp32 and bf16) and the
// coordinator mode (gRPC streams to a GradientExchange service, and the gradient socket, both
// hosted by this parent process) against PyTorch's Gloo, every rank a separate process on this machine, measured in one run.
// Medians after warm-up; each timed collective starts after a barrier; a configuration's figure is
// its slowest rank.
//
//   bash bench/AllReduce/run.sh [--iters N] [--warmup N] [--worlds 2,4] [--floats 11200000,2150000] [--no-gloo] [--no-ring] [--no-coordinator] [--no-grpc] [--chunk-bytes B] [--socket-buffer B] [--python /usr/bin/python3]
//   (a rank: --rank R --endpoints E0,E1,.. --floats N --iters N --warmup N --wire fp32|bf16, or --coordinator URL --trial T [--gradient-port P] instead of --endpoints)
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Orchestrator.Coordinator.Aggregation;
using Orchestrator.Coordinator.Grpc.Gradients;
using Orchestrator.Worker.Distributed;

var options = Args.Parse(args);
if (options.Rank is { } rank) return await RankAsync(rank, options);
if (options.Coordinator) await CoordinatorTableAsync();
if (!options.Ring) return 0;

Console.WriteLine($"{Environment.ProcessorCount} cores, {options.Iterations} timed iterations after {options.Warmup} warm-up, median of the slowest rank; ms");
Console.WriteLine();
Console.WriteLine("| buffer | ranks | Gloo fp32 | ring TCP fp32 | ring Unix fp32 | ring TCP bf16 | ring Unix bf16 | TCP/Gloo | Unix/Gloo |");
Console.WriteLine("|---|---|---|---|---|---|---|---|---|");
foreach (var floats in options.Floats)
foreach (var world in options.Worlds)
{
    var gloo = options.Gloo ? RunGloo(world, floats) : double.NaN;
    var tcp = RunRing(world, floats, unix: false, "fp32");
    var unix = RunRing(world, floats, unix: true, "fp32");
    var tcpBf16 = RunRing(world, floats, unix: false, "bf16");
    var unixBf16 = RunRing(world, floats, unix: true, "bf16");
    Console.WriteLine($"| {floats * 4 / 1e6:0.#} MB | {world} | {gloo:0.0} | {tcp:0.0} | {unix:0.0} | {tcpBf16:0.0} | {unixBf16:0.0} | {tcp / gloo:0.00} | {unix / gloo:0.00} |");
}
return 0;

double RunRing(int world, int floats, bool unix, string wire)
{
    var directory = unix ? Directory.CreateTempSubdirectory("orch-ring-bench-").FullName : null;
    try
    {
        var endpoints = Enumerable.Range(0, world)
            .Select(r => unix ? $"unix:{Path.Combine(directory!, $"r{r}.sock")}" : $"127.0.0.1:{FreePort()}").ToArray();
        var self = Environment.ProcessPath!;
        var prefix = Path.GetFileNameWithoutExtension(self) == "dotnet" ? new[] { typeof(Args).Assembly.Location } : [];
        return RunRanks(world, r => Start(self, [.. prefix, "--rank", $"{r}", "--endpoints", string.Join(',', endpoints),
            "--floats", $"{floats}", "--iters", $"{options.Iterations}", "--warmup", $"{options.Warmup}", "--wire", wire,
            "--chunk-bytes", $"{options.ChunkBytes}", "--socket-buffer", $"{options.SocketBuffer}"]));
    }
    finally
    {
        if (directory is not null) Directory.Delete(directory, recursive: true);
    }
}

// The coordinator mode: this process hosts the coordinator's GradientExchange service (Kestrel,
// HTTP/2 on loopback, the coordinator's message limit and Kestrel defaults) and its gradient socket
// (TCP on loopback); the ranks are separate processes using CoordinatorAllReduce (gRPC) or
// CoordinatorSocketAllReduce (socket). Every rank and the coordinator share the machine's cores.
async Task CoordinatorTableAsync()
{
    var builder = WebApplication.CreateSlimBuilder();
    builder.Logging.SetMinimumLevel(LogLevel.Warning);
    builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, l => l.Protocols = HttpProtocols.Http2));
    builder.Services.AddSingleton<ITrialLeaseCheck, AnyLease>();
    builder.Services.AddGradientAggregation();
    builder.Services.Configure<GradientAggregationOptions>(o => o.SocketPort = 0);
    builder.Services.AddGrpc(o => o.MaxReceiveMessageSize = o.MaxSendMessageSize = new Orchestrator.Coordinator.Configuration.CoordinatorOptions().MaxMessageBytes);
    await using var app = builder.Build();
    app.MapGrpcService<GradientExchangeService>();
    await app.StartAsync();
    var url = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
    var socketPort = app.Services.GetRequiredService<GradientSocketEndpoint>().Port!.Value;
    var socketPath = app.Services.GetRequiredService<GradientSocketEndpoint>().UnixPath!;

    Console.WriteLine($"{Environment.ProcessorCount} cores, {options.Iterations} timed iterations after {options.Warmup} warm-up, median of the slowest rank; ms");
    Console.WriteLine();
    Console.WriteLine("| buffer | ranks | Gloo fp32 | coordinator gRPC | coordinator TCP | coordinator TCP bf16 | coordinator Unix | coordinator shared memory | gRPC/Gloo | TCP/Gloo | Unix/Gloo | shm/Gloo |");
    Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|---|---|");
    foreach (var floats in options.Floats)
    foreach (var world in options.Worlds)
    {
        var gloo = options.Gloo ? RunGloo(world, floats) : double.NaN;
        var self = Environment.ProcessPath!;
        var prefix = Path.GetFileNameWithoutExtension(self) == "dotnet" ? new[] { typeof(Args).Assembly.Location } : [];
        double Coordinator(string plane)
        {
            var trial = "bench-" + Guid.NewGuid().ToString("N");
            string[] arguments = plane switch
            {
                "tcp" => ["--gradient-port", $"{socketPort}"],
                "tcp-bf16" => ["--gradient-port", $"{socketPort}", "--wire", "bf16"],
                "unix" => ["--gradient-path", socketPath, "--no-shm"],
                "shm" => ["--gradient-path", socketPath],
                _ => [],
            };
            return RunRanks(world, r => Start(self, [.. prefix, "--rank", $"{r}", "--world", $"{world}", "--coordinator", url, "--trial", trial, .. arguments,
                "--floats", $"{floats}", "--iters", $"{options.Iterations}", "--warmup", $"{options.Warmup}", "--chunk-bytes", $"{options.ChunkBytes}"]));
        }
        var grpc = options.Grpc ? Coordinator("grpc") : double.NaN;
        var tcp = Coordinator("tcp");
        var tcpBf16 = Coordinator("tcp-bf16");
        var unix = Coordinator("unix");
        var shm = Coordinator("shm");
        Console.WriteLine($"| {floats * 4 / 1e6:0.#} MB | {world} | {gloo:0.0} | {grpc:0.0} | {tcp:0.0} | {tcpBf16:0.0} | {unix:0.0} | {shm:0.0} | {grpc / gloo:0.00} | {tcp / gloo:0.00} | {unix / gloo:0.00} | {shm / gloo:0.00} |");
    }
    Console.WriteLine();
    await app.StopAsync();
}

double RunGloo(int world, int floats) =>
    RunRanks(1, _ => Start(options.Python, [options.GlooScript, "--world", $"{world}", "--floats", $"{floats}",
        "--iters", $"{options.Iterations}", "--warmup", $"{options.Warmup}", "--port", $"{FreePort()}"]));

// Starts the processes, waits (bounded), and returns the largest 'median_ms' any rank printed.
static double RunRanks(int count, Func<int, Process> start)
{
    var processes = Enumerable.Range(0, count).Select(start).ToArray();
    var outputs = processes.Select(p => p.StandardOutput.ReadToEndAsync()).ToArray();
    var errors = processes.Select(p => p.StandardError.ReadToEndAsync()).ToArray();
    foreach (var p in processes)
    {
        if (!p.WaitForExit(TimeSpan.FromMinutes(3))) p.Kill(entireProcessTree: true);
        p.WaitForExit();
    }
    var medians = outputs.SelectMany(o => o.Result.Split('\n'))
        .Where(l => l.Contains("median_ms", StringComparison.Ordinal))
        .Select(l => double.Parse(l.Split(' ')[^1], CultureInfo.InvariantCulture)).ToList();
    if (processes.Any(p => p.ExitCode != 0) || medians.Count == 0)
    {
        Console.Error.WriteLine(string.Join('\n', errors.Select(e => e.Result)));
        return double.NaN;
    }
    return medians.Max();
}

static Process Start(string file, string[] arguments)
{
    var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
    foreach (var a in arguments) info.ArgumentList.Add(a);
    return Process.Start(info)!;
}

static int FreePort()
{
    using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
    socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
    return ((IPEndPoint)socket.LocalEndPoint!).Port;
}

static async Task<int> RankAsync(int rank, Args options)
{
    var coordinatorOptions = new CoordinatorAllReduceOptions
    {
        TrialId = options.Trial,
        FencingToken = 1,
        Rank = rank,
        WorldSize = options.World,
        ChunkBytes = options.ChunkBytes,
        Wire = options.Wire,
    };
    await using IAllReduce ring = options.CoordinatorUrl is not { } url ? await ConnectRingAsync(rank, options)
        : options.GradientPath is { } path ? await CoordinatorSocketAllReduce.ConnectUnixAsync(coordinatorOptions, path, CancellationToken.None, options.SharedMemory)
        : options.GradientPort is { } port ? await CoordinatorSocketAllReduce.ConnectAsync(coordinatorOptions, new Uri(url).Host, port, CancellationToken.None)
        : await CoordinatorAllReduce.ConnectAsync(coordinatorOptions, new Uri(url), CancellationToken.None);
    var floats = options.Floats[0];
    var buffer = new float[floats];
    var random = new Random(rank);
    for (var i = 0; i < floats; i++) buffer[i] = (float)(random.NextDouble() - 0.5);
    var barrier = new float[1];
    var times = new List<double>();
    for (var i = 0; i < options.Warmup + options.Iterations; i++)
    {
        await ring.AllReduceAsync(barrier, CancellationToken.None);
        var start = Stopwatch.GetTimestamp();
        await ring.AllReduceAsync(buffer, CancellationToken.None);
        if (i >= options.Warmup) times.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
    }
    times.Sort();
    var median = times.Count % 2 == 1 ? times[times.Count / 2] : (times[times.Count / 2 - 1] + times[times.Count / 2]) / 2;
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"rank {rank} median_ms {median:0.000}"));
    return 0;
}

static async Task<IAllReduce> ConnectRingAsync(int rank, Args options)
{
    var ringOptions = new RingAllReduceOptions
    {
        Rank = rank,
        Endpoints = options.Endpoints.Select(RingEndpoint.Parse).ToArray(),
        Wire = options.Wire,
        Timeout = TimeSpan.FromSeconds(30),
        ChunkBytes = options.ChunkBytes,
        SocketBufferBytes = options.SocketBuffer,
    };
    return await RingAllReduce.ConnectAsync(ringOptions, CancellationToken.None);
}

/// <summary>The benchmark has no sweeps: every token is current.</summary>
internal sealed class AnyLease : ITrialLeaseCheck
{
    public Task<bool> IsCurrentAsync(string trialId, long fencingToken, CancellationToken cancellationToken) => Task.FromResult(true);
}

internal sealed record Args(int? Rank, string[] Endpoints, int[] Floats, int[] Worlds, int Iterations, int Warmup, WireFormat Wire, bool Gloo, string GlooScript, int ChunkBytes, int SocketBuffer, string Python)
{
    public bool Ring { get; init; } = true;
    public bool Coordinator { get; init; } = true;
    public string? CoordinatorUrl { get; init; }
    public int? GradientPort { get; init; }
    public string? GradientPath { get; init; }
    public bool SharedMemory { get; init; } = true;
    public bool Grpc { get; init; } = true;
    public string Trial { get; init; } = "bench";
    public int World { get; init; }

    public static Args Parse(string[] args)
    {
        var a = new Args(null, [], [11_200_000, 2_150_000], [2, 4], 15, 3, WireFormat.Fp32, true, "bench/AllReduce/gloo_allreduce.py",
            new RingAllReduceOptions().ChunkBytes, new RingAllReduceOptions().SocketBufferBytes, "/usr/bin/python3");
        for (var i = 0; i < args.Length; i++)
        {
            a = args[i] switch
            {
                "--rank" => a with { Rank = int.Parse(args[++i], CultureInfo.InvariantCulture) },
                "--endpoints" => a with { Endpoints = args[++i].Split(',') },
                "--floats" => a with { Floats = args[++i].Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray() },
                "--worlds" => a with { Worlds = args[++i].Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray() },
                "--iters" => a with { Iterations = int.Parse(args[++i], CultureInfo.InvariantCulture) },
                "--warmup" => a with { Warmup = int.Parse(args[++i], CultureInfo.InvariantCulture) },
                "--wire" => a with { Wire = args[++i] == "bf16" ? WireFormat.Bf16 : WireFormat.Fp32 },
                "--chunk-bytes" => a with { ChunkBytes = int.Parse(args[++i], CultureInfo.InvariantCulture) },
                "--socket-buffer" => a with { SocketBuffer = int.Parse(args[++i], CultureInfo.InvariantCulture) },
                "--python" => a with { Python = args[++i] },
                "--no-gloo" => a with { Gloo = false },
                "--no-ring" => a with { Ring = false },
                "--no-coordinator" => a with { Coordinator = false },
                "--coordinator" => a with { CoordinatorUrl = args[++i] },
                "--trial" => a with { Trial = args[++i] },
                "--gradient-port" => a with { GradientPort = int.Parse(args[++i], CultureInfo.InvariantCulture) },
                "--no-grpc" => a with { Grpc = false },
                "--gradient-path" => a with { GradientPath = args[++i] },
                "--no-shm" => a with { SharedMemory = false },
                "--world" => a with { World = int.Parse(args[++i], CultureInfo.InvariantCulture) },
                "--gloo-script" => a with { GlooScript = args[++i] },
                _ => throw new ArgumentException($"unknown argument '{args[i]}'"),
            };
        }
        return a;
    }
}

using System.Globalization;
using System.Text.RegularExpressions;
using Grpc.Net.Client;
using Orchestrator.Cli.FunctionalTests.Network;
using Orchestrator.Coordinator.State.Redis;
using Orchestrator.Protocol.V1;
using Orchestrator.TestSupport;
using Xunit.Abstractions;

namespace Orchestrator.Cli.FunctionalTests;

/// <summary>
/// Network faults between machines, on one machine: each worker is a real `orch worker` process in
/// its own network namespace (<see cref="TestNetwork"/>), the coordinator and Redis run in the root
/// namespace, the coordinator listening on the bridge. Faults are nftables rules and TBF on the
/// workers' links (this kernel has no netem; <see cref="TestHost"/> says what stands in for it).
/// </summary>
[Collection(EndToEnd.Name)]
public sealed partial class NetworkFaultTests(ITestOutputHelper output) : IAsyncLifetime
{
    /// <summary>The coordinator's lease timeout here: a worker silent this long loses its trials.</summary>
    private static readonly TimeSpan LeaseTimeout = TimeSpan.FromSeconds(3);

    private readonly string _dir = Directory.CreateTempSubdirectory("orch-netns-").FullName;
    private readonly string _prefix = "netns" + Guid.NewGuid().ToString("N")[..8];
    private readonly List<OrchService> _services = [];
    private TestNetwork _network = null!;
    private RedisServer _redis = null!;
    private OrchService _coordinator = null!;
    private int _port;
    private int _httpPort;

    private string Address => $"http://{_network.Gateway}:{_port}";

    public async Task InitializeAsync()
    {
        try
        {
            await StartAsync();
        }
        catch
        {
            await DisposeAsync();
            throw;
        }
    }

    private async Task StartAsync()
    {
        _network = TestNetwork.Create();
        _network.AddHost();
        _network.AddHost();
        _redis = await RedisServer.StartAsync(CancellationToken.None);
        _port = RedisServer.FreePort();
        _httpPort = RedisServer.FreePort();
        _coordinator = OrchService.Start(_dir, "coordinator", "--redis", _redis.Configuration, "--redis-prefix", _prefix,
            "--bind", _network.Gateway, "--port", Invariant(_port), "--http-port", Invariant(_httpPort),
            "--state-dir", Path.Combine(_dir, "state"), "--lease-timeout", Invariant((int)LeaseTimeout.TotalSeconds),
            "--gradient-port", Invariant(RedisServer.FreePort()));
        _services.Add(_coordinator);
        await EventuallyAsync(async () =>
            await WithClientAsync(c => c.ListSweepsAsync(new ListSweepsRequest(), deadline: DateTime.UtcNow.AddSeconds(2)).ResponseAsync),
            TimeSpan.FromSeconds(60), "the coordinator starting");
    }

    /// <summary>A worker in <paramref name="host"/>, advertising the host's own address for its gradient port.</summary>
    private OrchService StartWorker(TestHost host, string id, int dataPort = 0)
    {
        string[] args = ["worker", "--coordinator", Address, "--id", id, "--threads", "1", "--work-dir", Path.Combine(_dir, id),
            "--advertise-host", host.Address];
        if (dataPort != 0) args = [.. args, "--data-port", Invariant(dataPort)];
        var w = OrchService.StartUnder(host.Launcher, _dir, args);
        _services.Add(w);
        return w;
    }

    private async Task<string> SubmitAsync(string name, string yaml)
    {
        File.WriteAllText(Path.Combine(_dir, name), yaml);
        var r = await Task.Run(() => OrchProcess.Run(_dir, "submit", name, "--coordinator", Address, "--json"));
        Assert.True(r.ExitCode == 0, r + "\ncoordinator:\n" + _coordinator.Output);
        return r.LastJson.GetProperty("sweep").GetString()!;
    }

    private async Task<T> WithClientAsync<T>(Func<Protocol.V1.Sweeps.SweepsClient, Task<T>> call)
    {
        using var channel = GrpcChannel.ForAddress(Address);
        return await call(new Protocol.V1.Sweeps.SweepsClient(channel));
    }

    private async Task<IReadOnlyList<Trial>> TrialsAsync(string sweepId) =>
        (await WithClientAsync(c => c.ListTrialsAsync(new ListTrialsRequest { SweepId = sweepId }, deadline: DateTime.UtcNow.AddSeconds(10)).ResponseAsync)).Trials;

    private async Task<Orchestrator.Coordinator.Domain.TrialRecord?> StoredTrialAsync(string trialId)
    {
        await using var store = await RedisStateStore.ConnectAsync(_redis.Configuration, _prefix, CancellationToken.None);
        return await store.GetTrialAsync(trialId, CancellationToken.None);
    }

    /// <summary>Polls until the probe returns a value; single failed calls count as "not yet".</summary>
    private async Task<T> EventuallyAsync<T>(Func<Task<T?>> probe, TimeSpan timeout, string what) where T : class
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                if (await probe() is { } value) return value;
            }
            catch (Grpc.Core.RpcException) { }
            catch (HttpRequestException) { }
            await Task.Delay(250);
        }
        throw new TimeoutException($"{what} did not happen within {timeout}.\n{Everything()}");
    }

    private async Task<Sweep> EndedAsync(string sweepId, TimeSpan timeout) => await EventuallyAsync(async () =>
    {
        var s = await WithClientAsync(c => c.GetSweepAsync(new GetSweepRequest { SweepId = sweepId }, deadline: DateTime.UtcNow.AddSeconds(10)).ResponseAsync);
        return s.State is SweepState.Completed or SweepState.Failed or SweepState.Cancelled ? s : null;
    }, timeout, $"sweep {sweepId} ending");

    /// <summary>One metric point per epoch 1..<paramref name="epochs"/>, no step twice: nothing lost, nothing from a stale attempt.</summary>
    private async Task<IReadOnlyList<Orchestrator.Coordinator.Domain.MetricPointRecord>> AssertEveryEpochRecordedOnceAsync(string trialId, int epochs)
    {
        await using var store = await RedisStateStore.ConnectAsync(_redis.Configuration, _prefix, CancellationToken.None);
        var points = await store.GetMetricsAsync(trialId, CancellationToken.None);
        Assert.True(points.Select(p => p.Epoch).SequenceEqual(Enumerable.Range(1, epochs)) && points.Select(p => p.Step).Distinct().Count() == points.Count,
            $"trial {trialId} has metric points for epochs [{string.Join(",", points.Select(p => p.Epoch))}], steps [{string.Join(",", points.Select(p => p.Step))}]; " +
            $"expected each epoch of 1..{epochs} once.\n{Everything()}");
        return points;
    }

    /// <summary>The coordinator's counter of writes refused by fencing, from its /metrics (summed over labels).</summary>
    private async Task<double> StaleWritesRefusedAsync()
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        var text = await http.GetStringAsync(new Uri($"http://{_network.Gateway}:{_httpPort}/metrics"));
        return StaleWritesSample().Matches(text).Sum(m => double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture));
    }

    [GeneratedRegex(@"^orch_stale_writes_refused_total\{[^}]*\} ([0-9.eE+]+)", RegexOptions.Multiline)]
    private static partial Regex StaleWritesSample();

    /// <summary>Every process's output and each host's faults, for failure messages.</summary>
    private string Everything() =>
        string.Join("\n", _network.Hosts.Select(h => h.ToString())) + "\ncoordinator:\n" + _coordinator.Output + "\n" +
        string.Join("\n", _services.Where(s => s != _coordinator).Select(s => s.Output));

    /// <summary>Writes a result line to the test output and, when ORCH_BENCH_RECORD names a file, appends it there (bench/network-faults.sh).</summary>
    private void Record(string line)
    {
        output.WriteLine(line);
        if (Environment.GetEnvironmentVariable("ORCH_BENCH_RECORD") is { Length: > 0 } file) File.AppendAllText(file, line + "\n");
    }

    private static string Invariant(int value) => value.ToString(CultureInfo.InvariantCulture);

    private static string Seconds(TimeSpan span) => span.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture);

    public async Task DisposeAsync()
    {
        try
        {
            foreach (var s in _services) await s.DisposeAsync();
            _services.Clear();
            if (_redis is not null) await _redis.DisposeAsync();
        }
        finally
        {
            // Whatever failed above, the namespaces, links and rules go (and a second call is harmless).
            _network?.Dispose();
            try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
        }
    }
}

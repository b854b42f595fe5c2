using System.Globalization;
using System.Text.Json;
using Orchestrator.TestSupport;

namespace Orchestrator.Cli.FunctionalTests;

/// <summary>
/// Slots on a real worker process: `orch worker --devices cuda:2:… --device cpu` offers two GPU
/// slots and trains on the CPU, so a machine without GPUs runs the worker's side of GPU
/// scheduling for real: both ranks of a gang on one worker (each in its own run folder), and two
/// trials at once.
/// </summary>
[Collection(EndToEnd.Name)]
public sealed class GpuSlotsTests : IAsyncLifetime
{
    private static string Sweep(string name, int trials, int workers) => $$"""
        name: {{name}}
        data: { name: synthetic, limitTrain: 512, limitTest: 128 }
        model: { name: simple-cnn }
        trial: { epochs: 2, batchSize: 64 }
        parameters:
          optimizer.lr: { values: [{{string.Join(", ", Enumerable.Range(1, trials).Select(i => $"0.0{i}"))}}] }
        search: { method: grid, parallelTrials: 2 }
        resources: { workers: {{workers}}, gpusPerWorker: 1 }
        """;

    private readonly string _dir = Directory.CreateTempSubdirectory("orch-slots-").FullName;
    private readonly List<OrchService> _services = [];
    private string _address = "";
    private OrchService _worker = null!;

    public Task InitializeAsync()
    {
        var port = RedisServer.FreePort();
        _address = $"http://127.0.0.1:{port.ToString(CultureInfo.InvariantCulture)}";
        _services.Add(OrchService.Start(_dir, "coordinator", "--port", port.ToString(CultureInfo.InvariantCulture), "--state-dir", "state", "--gradient-port", "0"));
        _worker = OrchService.Start(_dir, "worker", "--coordinator", _address, "--id", "slots", "--threads", "1", "--work-dir", "work",
            "--device", "cpu", "--devices", "cuda:2:FakeGPU:1GB");
        _services.Add(_worker);
        File.WriteAllText(Path.Combine(_dir, "gang.yaml"), Sweep("gang", trials: 1, workers: 2));
        File.WriteAllText(Path.Combine(_dir, "pair.yaml"), Sweep("pair", trials: 2, workers: 1));
        return Task.CompletedTask;
    }

    private async Task<JsonElement> RunSweepAsync(string file)
    {
        OrchProcess.Result r = null!;
        for (var attempt = 0; attempt < 60; attempt++)
        {
            r = await Task.Run(() => OrchProcess.Run(_dir, "submit", file, "--coordinator", _address, "--watch", "--json"));
            if (r.ExitCode == 0 || !r.StdErr.Contains("cannot reach", StringComparison.Ordinal)) break;
            await Task.Delay(500); // the coordinator is still starting
        }
        Assert.True(r.ExitCode == 0, r + "\n" + string.Join("\n", _services.Select(s => s.Output)));
        var final = r.LastJson;
        Assert.True(final.GetProperty("state").GetString() == "completed", r + "\nworker:\n" + _worker.Output);
        return final;
    }

    [Fact]
    public async Task A_worker_with_two_GPU_slots_runs_both_ranks_of_a_gang_and_then_two_trials_at_once()
    {
        var gang = await RunSweepAsync("gang.yaml");
        var gangTrial = gang.GetProperty("sweep").GetString() + "-t0000";
        Assert.Equal(1, gang.GetProperty("trials_completed").GetInt32());
        // Rank 0 and rank 1 ran here, side by side, each in its own run folder.
        Assert.True(Directory.Exists(Path.Combine(_dir, "work", gangTrial)), _worker.Output);
        Assert.True(Directory.Exists(Path.Combine(_dir, "work", gangTrial + "-rank1")), _worker.Output);

        var pair = await RunSweepAsync("pair.yaml");
        Assert.Equal(2, pair.GetProperty("trials_completed").GetInt32());
        // Both trials started before either ended: they trained at the same time, one per slot.
        var log = _worker.Output;
        var prefix = pair.GetProperty("sweep").GetString()!;
        var starts = new[] { "t0000", "t0001" }.Select(t => log.IndexOf($"Trial {prefix}-{t} attempt 1 started", StringComparison.Ordinal)).ToList();
        var firstEnd = new[] { "t0000", "t0001" }.Select(t => log.IndexOf($"Trial {prefix}-{t} ended", StringComparison.Ordinal)).Min();
        Assert.All(starts, s => Assert.InRange(s, 0, firstEnd));

        var workers = await Task.Run(() => OrchProcess.Run(_dir, "workers", "--coordinator", _address, "--json"));
        Assert.True(workers.ExitCode == 0, workers.ToString());
        var gpus = workers.LastJson[0].GetProperty("gpus");
        Assert.Equal(2, gpus.GetArrayLength());
        Assert.All(gpus.EnumerateArray(), g => Assert.Equal(("FakeGPU", 1_000_000_000L), (g.GetProperty("name").GetString(), g.GetProperty("memory_bytes").GetInt64())));
        Assert.Contains("Offering cuda:0 FakeGPU 1 GB, cuda:1 FakeGPU 1 GB", log);
    }

    public async Task DisposeAsync()
    {
        foreach (var s in _services) await s.DisposeAsync();
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}

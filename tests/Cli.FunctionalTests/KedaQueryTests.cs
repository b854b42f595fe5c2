using System.Globalization;
using System.Text.Json;
using Orchestrator.Cli.FunctionalTests.Containers;
using Orchestrator.TestSupport;
using YamlDotNet.RepresentationModel;

namespace Orchestrator.Cli.FunctionalTests;

/// <summary>
/// The query of the KEDA ScaledObject in k8s/, asked of a real Prometheus that scrapes a real
/// coordinator: it is 0 with nothing to do (KEDA scales the workers to zero), it asks for the whole
/// gang while a data-parallel trial of 2 workers waits with only 1 connected, and it falls back to
/// 0 once the sweep is cancelled. What KEDA does with the value (replicas = ceil(value / threshold),
/// within min and max) is computed here from the same ScaledObject.
/// </summary>
[Collection(EndToEnd.Name)]
public sealed class KedaQueryTests : IAsyncLifetime
{
    private const string GangSweep = """
        name: gang
        data: { name: fashion-mnist, limitTrain: 500, limitTest: 100 }
        model: { name: simple-cnn }
        trial: { epochs: 1, batchSize: 50 }
        parameters:
          optimizer.lr: { values: [0.05] }
        search: { method: grid, parallelTrials: 1 }
        resources: { workers: 2 }
        """;

    private readonly string _dir = Directory.CreateTempSubdirectory("orch-keda-").FullName;
    private readonly List<OrchService> _services = [];
    private PrometheusServer _prometheus = null!;
    private int _grpc;

    public async Task InitializeAsync()
    {
        _grpc = RedisServer.FreePort();
        var http = RedisServer.FreePort();
        _services.Add(OrchService.Start(_dir, "coordinator", "--port", _grpc.ToString(CultureInfo.InvariantCulture),
            "--http-port", http.ToString(CultureInfo.InvariantCulture), "--state-dir", "state", "--gradient-port", "0"));
        _prometheus = await PrometheusServer.StartAsync([("coordinator", $"127.0.0.1:{http}")], CancellationToken.None);
        File.WriteAllText(Path.Combine(_dir, "sweep.yaml"), GangSweep);
    }

    public async Task DisposeAsync()
    {
        foreach (var s in _services) await s.DisposeAsync();
        await _prometheus.DisposeAsync();
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private sealed record ScaledObject(string Query, double Threshold, int MinReplicas, int MaxReplicas)
    {
        /// <summary>KEDA's Prometheus scaler: inactive (min replicas, zero here) at 0, else ceil(value / threshold) within [min, max].</summary>
        public int Replicas(double value) =>
            value <= 0 ? MinReplicas : Math.Clamp((int)Math.Ceiling(value / Threshold), Math.Max(MinReplicas, 1), MaxReplicas);
    }

    private static ScaledObject ReadScaledObject()
    {
        var file = Path.Combine(RepositoryRoot.Path, "k8s", "keda-scaledobject.yaml");
        var yaml = new YamlStream();
        using (var reader = File.OpenText(file)) yaml.Load(reader);
        var spec = (YamlMappingNode)((YamlMappingNode)yaml.Documents[0].RootNode)["spec"];
        var trigger = (YamlMappingNode)((YamlSequenceNode)spec["triggers"]).Children.Single(t => ((YamlMappingNode)t)["type"].ToString() == "prometheus");
        var metadata = (YamlMappingNode)trigger["metadata"];
        return new ScaledObject(metadata["query"].ToString(), double.Parse(metadata["threshold"].ToString(), CultureInfo.InvariantCulture),
            int.Parse(spec["minReplicaCount"].ToString(), CultureInfo.InvariantCulture), int.Parse(spec["maxReplicaCount"].ToString(), CultureInfo.InvariantCulture));
    }

    /// <summary>Waits until the query, evaluated by Prometheus, has the value (a missing series is a failure: KEDA would see no value).</summary>
    private async Task AssertQueryBecomesAsync(string query, double expected, string when)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        string last = "";
        while (DateTime.UtcNow < deadline)
        {
            var result = (await _prometheus.QueryAsync(query, CancellationToken.None)).GetProperty("result");
            last = result.GetRawText();
            if (result.GetArrayLength() == 1 && double.Parse(result[0].GetProperty("value")[1].GetString()!, CultureInfo.InvariantCulture) == expected) return;
            await Task.Delay(500);
        }
        throw new TimeoutException($"{when}: the KEDA query `{query}` did not become {expected}; last result {last}\n" +
            string.Join("\n", _services.Select(s => s.Output)));
    }

    [Fact]
    public async Task The_ScaledObject_query_scales_to_zero_when_idle_and_to_the_whole_gang_while_one_waits()
    {
        var scaled = ReadScaledObject();
        Assert.Equal(0, scaled.MinReplicas);
        Assert.True(scaled.MaxReplicas >= 2, $"maxReplicaCount {scaled.MaxReplicas} cannot hold a gang of 2");

        // Nothing to do: a value (not an empty result) of 0, so KEDA scales the workers to zero.
        await AssertQueryBecomesAsync(scaled.Query, 0, "with no sweep and no worker");
        Assert.Equal(0, scaled.Replicas(0));

        // A data-parallel trial of 2 workers, and only 1 worker connected: the gang waits.
        _services.Add(OrchService.Start(_dir, "worker", "--coordinator", $"http://127.0.0.1:{_grpc}", "--id", "w0", "--threads", "1", "--work-dir", "work0"));
        OrchProcess.Result submit = null!;
        for (var attempt = 0; attempt < 60; attempt++)
        {
            submit = await Task.Run(() => OrchProcess.Run(_dir, "submit", "sweep.yaml", "--coordinator", $"http://127.0.0.1:{_grpc}", "--json"));
            if (submit.ExitCode == 0 || !submit.StdErr.Contains("cannot reach", StringComparison.Ordinal)) break;
            await Task.Delay(500);
        }
        Assert.True(submit.ExitCode == 0, submit.ToString());
        var sweepId = submit.LastJson.GetProperty("sweep").GetString()!;
        await AssertQueryBecomesAsync(scaled.Query, 2, "while a gang of 2 waits with 1 worker connected");
        Assert.Equal(2, scaled.Replicas(2));
        var trials = await Task.Run(() => OrchProcess.Run(_dir, "trials", sweepId, "--coordinator", $"http://127.0.0.1:{_grpc}", "--json"));
        Assert.Equal("pending", JsonDocument.Parse(trials.StdOut).RootElement[0].GetProperty("state").GetString());
        // Read page by page, filtered on the coordinator: nothing runs yet.
        var running = await Task.Run(() => OrchProcess.Run(_dir, "trials", sweepId, "--state", "running", "--coordinator", $"http://127.0.0.1:{_grpc}", "--json"));
        Assert.True(running.ExitCode == 0, running.ToString());
        Assert.Equal(0, JsonDocument.Parse(running.StdOut).RootElement.GetArrayLength());
        var badLimit = await Task.Run(() => OrchProcess.Run(_dir, "trials", sweepId, "--limit", "-1", "--coordinator", $"http://127.0.0.1:{_grpc}"));
        Assert.Equal(2, badLimit.ExitCode);
        Assert.Contains("--limit", badLimit.StdErr);

        // Cancelled: nothing waits and nothing runs, back to zero.
        var cancel = await Task.Run(() => OrchProcess.Run(_dir, "cancel", sweepId, "--coordinator", $"http://127.0.0.1:{_grpc}"));
        Assert.True(cancel.ExitCode == 0, cancel.ToString());
        await AssertQueryBecomesAsync(scaled.Query, 0, "after the sweep was cancelled");
    }
}

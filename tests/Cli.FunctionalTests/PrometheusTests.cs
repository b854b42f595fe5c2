using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Orchestrator.TestSupport;

namespace Orchestrator.Cli.FunctionalTests;

/// <summary>
/// A real Prometheus scrapes a coordinator and a worker (separate `orch` processes) while a small
/// sweep trains; then every metric docs/metrics.md promises, and every query of the Grafana
/// dashboard, is checked through Prometheus' HTTP API.
/// </summary>
[Collection(EndToEnd.Name)]
public sealed partial class PrometheusTests : IAsyncLifetime
{
    private const string Sweep = """
        name: metrics
        data: { name: fashion-mnist, limitTrain: 1000, limitTest: 200 }
        model: { name: simple-cnn }
        trial: { epochs: 2, batchSize: 25 }
        parameters:
          optimizer.lr: { values: [0.02, 0.05] }
        search: { method: grid, parallelTrials: 1 }
        resources: { workers: 2 }
        """;

    private readonly string _dir = Directory.CreateTempSubdirectory("orch-prom-").FullName;
    private readonly List<OrchService> _services = [];
    private PrometheusServer _prometheus = null!;
    private string _sweepId = "";

    public async Task InitializeAsync()
    {
        int grpc = RedisServer.FreePort(), http = RedisServer.FreePort();
        var workerMetrics = new[] { RedisServer.FreePort(), RedisServer.FreePort() };
        _services.Add(OrchService.Start(_dir, "coordinator", "--port", grpc.ToString(CultureInfo.InvariantCulture), "--http-port", http.ToString(CultureInfo.InvariantCulture), "--state-dir", "state", "--gradient-port", "0"));
        // Two workers and trials that use both: a data-parallel trial, so gradient aggregation has data too.
        for (var i = 0; i < 2; i++)
            _services.Add(OrchService.Start(_dir, "worker", "--coordinator", $"http://127.0.0.1:{grpc}", "--id", $"w{i}", "--threads", "1",
                "--metrics-port", workerMetrics[i].ToString(CultureInfo.InvariantCulture), "--work-dir", $"work{i}"));
        _prometheus = await PrometheusServer.StartAsync(
            [("coordinator", $"127.0.0.1:{http}"), ("worker", $"127.0.0.1:{workerMetrics[0]}"), ("worker", $"127.0.0.1:{workerMetrics[1]}")], CancellationToken.None);

        File.WriteAllText(Path.Combine(_dir, "sweep.yaml"), Sweep);
        OrchProcess.Result submit = null!;
        for (var attempt = 0; attempt < 60; attempt++)
        {
            submit = await Task.Run(() => OrchProcess.Run(_dir, "submit", "sweep.yaml", "--coordinator", $"http://127.0.0.1:{grpc}", "--watch", "--json"));
            if (submit.ExitCode == 0 || !submit.StdErr.Contains("cannot reach", StringComparison.Ordinal)) break;
            await Task.Delay(500); // the coordinator is still starting
        }
        Assert.True(submit.ExitCode == 0, submit + "\n" + string.Join("\n", _services.Select(s => s.Output)));
        _sweepId = submit.LastJson.GetProperty("sweep").GetString()!;
        // Wait until Prometheus has scraped the final state.
        await EventuallyAsync(async () => Scalar(await _prometheus.QueryAsync("sum(orch_trials{state=\"completed\"})", CancellationToken.None)) == 2,
            "Prometheus seeing 2 completed trials");
    }

    private async Task EventuallyAsync(Func<Task<bool>> condition, string what)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"{what} did not happen:\n{_prometheus.Log}");
            await Task.Delay(500);
        }
    }

    private static double? Scalar(JsonElement data)
    {
        var result = data.GetProperty("result");
        if (result.GetArrayLength() == 0) return null;
        return double.Parse(result[0].GetProperty("value")[1].GetString()!, CultureInfo.InvariantCulture);
    }

    /// <summary>The metric names, types and process of the required tables in docs/metrics.md.</summary>
    private static IEnumerable<(string Job, string Name, string Type)> DocumentedMetrics()
    {
        string? job = null;
        foreach (var line in File.ReadLines(Path.Combine(RepositoryRoot.Path, "docs", "metrics.md")))
        {
            if (line.StartsWith("## ", StringComparison.Ordinal))
                job = line switch { "## Coordinator" => "coordinator", "## Worker" => "worker", _ => null };
            if (job is null) continue;
            var m = MetricRow().Match(line);
            if (m.Success) yield return (job, m.Groups[1].Value, m.Groups[2].Value);
        }
    }

    [GeneratedRegex(@"^\| `([a-z_]+)` \| (gauge|counter|histogram) \|")]
    private static partial Regex MetricRow();

    [Fact]
    public async Task Every_documented_metric_is_scraped_with_a_plausible_value()
    {
        var metrics = DocumentedMetrics().ToList();
        Assert.True(metrics.Count >= 25, $"only {metrics.Count} metrics parsed from docs/metrics.md");
        var missing = new List<string>();
        foreach (var (job, name, type) in metrics)
        {
            var series = type == "histogram" ? name + "_count" : name;
            var data = await _prometheus.QueryAsync($"{series}{{job=\"{job}\"}}", CancellationToken.None);
            var result = data.GetProperty("result");
            if (result.GetArrayLength() == 0) { missing.Add($"{job}: {series}"); continue; }
            foreach (var sample in result.EnumerateArray())
            {
                var value = double.Parse(sample.GetProperty("value")[1].GetString()!, CultureInfo.InvariantCulture);
                Assert.True(double.IsFinite(value) && value >= 0, $"{series} = {value}");
            }
        }
        Assert.True(missing.Count == 0, "not scraped: " + string.Join(", ", missing));

        // Plausible, not just present.
        var q = (string promql) => _prometheus.QueryAsync(promql, CancellationToken.None);
        Assert.Equal(2, Scalar(await q("sum(orch_trials{state=\"completed\"})")));
        Assert.Equal(1, Scalar(await q("sum(orch_sweeps{state=\"completed\"})")));
        Assert.Equal(0, Scalar(await q("sum(orch_queue_pending_trials)")));
        var accuracy = Scalar(await q($"max(orch_sweep_best_objective{{sweep=\"{_sweepId}\", metric=\"val_accuracy\"}})"));
        Assert.InRange(accuracy!.Value, 0.3, 1.0);
        Assert.Equal(2, Scalar(await q($"count(orch_trial_epoch{{sweep=\"{_sweepId}\"}} == 2)")));
        Assert.InRange(Scalar(await q("max(orch_trial_accuracy{split=\"val\"})"))!.Value, 0.3, 1.0);
        // 2 trials × 2 epochs × 1000 images went through the two workers, each rank its half.
        Assert.Equal(4000, Scalar(await q("sum(orch_worker_samples_total)")));
        Assert.Equal(2000, Scalar(await q("sum(orch_worker_samples_total{instance=~\".*\"}) / 2")));
        // Rank 0 reports each epoch; every step averaged the gradients of both ranks.
        Assert.Equal(4, Scalar(await q("sum(orch_gradient_aggregation_duration_seconds_count)")));
        Assert.True(Scalar(await q("max(orch_gradient_aggregation_size_bytes_sum) / max(orch_gradient_aggregation_size_bytes_count)")) > 1_000_000);
        Assert.Equal(4, Scalar(await q("sum(orch_epoch_duration_seconds_count)")));
        Assert.True(Scalar(await q("sum(orch_checkpoint_upload_size_bytes_sum)")) > 1_000_000);
        Assert.True(Scalar(await q("sum(http_server_request_duration_seconds_count{http_route=\"/orchestrator.v1.Sweeps/SubmitSweep\"})")) >= 1);
    }

    [Fact]
    public async Task Every_dashboard_query_parses_and_returns_data()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(RepositoryRoot.Path, "k8s", "grafana", "orchestrator-dashboard.json")));
        var root = doc.RootElement;
        var variables = root.GetProperty("templating").GetProperty("list").EnumerateArray().ToDictionary(v => v.GetProperty("name").GetString()!);
        Assert.Equal("datasource", variables["datasource"].GetProperty("type").GetString());
        Assert.Equal("prometheus", variables["datasource"].GetProperty("query").GetString());
        Assert.Equal("label_values(orch_trial_epoch, sweep)", variables["sweep"].GetProperty("definition").GetString());
        Assert.Contains(_sweepId, await _prometheus.LabelValuesAsync("sweep", CancellationToken.None));

        var checkedQueries = 0;
        var empty = new List<string>();
        foreach (var panel in root.GetProperty("panels").EnumerateArray().Where(p => p.GetProperty("type").GetString() != "row"))
        {
            var title = panel.GetProperty("title").GetString()!;
            foreach (var target in panel.GetProperty("targets").EnumerateArray())
            {
                var expr = target.GetProperty("expr").GetString()!
                    .Replace("$__rate_interval", "30s", StringComparison.Ordinal)
                    .Replace("$sweep", _sweepId, StringComparison.Ordinal);
                var data = await _prometheus.QueryAsync(expr, CancellationToken.None); // throws if it does not parse
                checkedQueries++;
                if (data.GetProperty("result").GetArrayLength() == 0) empty.Add($"{title}: {expr}");
            }
        }
        Assert.True(checkedQueries >= 20, $"only {checkedQueries} queries found");
        Assert.True(empty.Count == 0, "queries without data:\n" + string.Join("\n", empty));
    }

    public async Task DisposeAsync()
    {
        foreach (var s in _services) await s.DisposeAsync();
        await _prometheus.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }
}

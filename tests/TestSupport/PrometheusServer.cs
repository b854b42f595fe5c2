using System.Diagnostics;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;

namespace Orchestrator.TestSupport;

/// <summary>
/// A real <c>prometheus</c> process for tests: scrapes the given targets every second, listens on
/// a free loopback port, keeps its data in a temporary folder. Without the binary the fixture
/// fails (never skips) and says how to install it.
/// </summary>
public sealed class PrometheusServer : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _log = new();
    private readonly HttpClient _http;

    private PrometheusServer(Process process, int port, string directory)
    {
        _process = process;
        Port = port;
        Directory = directory;
        _http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/"), Timeout = TimeSpan.FromSeconds(10) };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_log) _log.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_log) _log.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public int Port { get; }
    public string Directory { get; }
    public string Log { get { lock (_log) return _log.ToString(); } }

    /// <summary>Starts Prometheus scraping each (job, host:port) target every second, and waits until it is ready.</summary>
    public static async Task<PrometheusServer> StartAsync(IReadOnlyList<(string Job, string Target)> targets, CancellationToken ct)
    {
        var binary = RedisServer.FindOnPath("prometheus")
            ?? throw new InvalidOperationException("prometheus was not found on PATH. These tests need a real Prometheus: apt-get install prometheus (or run .ci/run).");
        var dir = System.IO.Directory.CreateTempSubdirectory("orch-prometheus-").FullName;
        var config = new StringBuilder("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n");
        foreach (var job in targets.GroupBy(t => t.Job))
            config.Append($"  - job_name: {job.Key}\n    static_configs:\n      - targets: [{string.Join(", ", job.Select(t => $"'{t.Target}'"))}]\n");
        await File.WriteAllTextAsync(Path.Combine(dir, "prometheus.yml"), config.ToString(), ct);
        var port = RedisServer.FreePort();
        var psi = new ProcessStartInfo(binary) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = dir };
        foreach (var a in new[] { $"--config.file={Path.Combine(dir, "prometheus.yml")}", $"--storage.tsdb.path={Path.Combine(dir, "data")}",
                     $"--web.listen-address=127.0.0.1:{port}", "--log.level=warn" })
            psi.ArgumentList.Add(a);
        var server = new PrometheusServer(Process.Start(psi)!, port, dir);
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            try
            {
                using var ready = await server._http.GetAsync("-/ready", ct);
                if (ready.IsSuccessStatusCode) return server;
            }
            catch (HttpRequestException) { }
            if (server._process.HasExited || DateTime.UtcNow > deadline)
            {
                var log = server.Log;
                await server.DisposeAsync();
                throw new InvalidOperationException("prometheus did not become ready:\n" + log);
            }
            await Task.Delay(200, ct);
        }
    }

    /// <summary>An instant query; returns the "data" element (status must be success, else throws with Prometheus' error).</summary>
    public async Task<JsonElement> QueryAsync(string promql, CancellationToken ct)
    {
        using var response = await _http.GetAsync("api/v1/query?query=" + Uri.EscapeDataString(promql), ct);
        var body = await response.Content.ReadFromJsonAsync<JsonElement>(ct);
        if (body.GetProperty("status").GetString() != "success")
            throw new InvalidOperationException($"query '{promql}' failed: {body}");
        return body.GetProperty("data");
    }

    /// <summary>Values of a label (what Grafana's label_values() shows).</summary>
    public async Task<IReadOnlyList<string>> LabelValuesAsync(string label, CancellationToken ct)
    {
        var body = await _http.GetFromJsonAsync<JsonElement>($"api/v1/label/{label}/values", ct);
        return body.GetProperty("data").EnumerateArray().Select(e => e.GetString()!).ToList();
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        }
        _process.Dispose();
        _http.Dispose();
        try { System.IO.Directory.Delete(Directory, recursive: true); }
        catch (IOException) { }
    }
}

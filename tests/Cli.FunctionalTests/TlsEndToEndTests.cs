using System.Globalization;
using Orchestrator.TestSupport;

namespace Orchestrator.Cli.FunctionalTests;

/// <summary>
/// A sweep over TLS across processes: `orch coordinator` with a certificate and mutual TLS for
/// workers, an `orch worker` with its client certificate, and `orch` commands that trust the CA.
/// </summary>
[Collection(EndToEnd.Name)]
public sealed class TlsEndToEndTests : IAsyncLifetime
{
    private readonly string _dir = Directory.CreateTempSubdirectory("orch-tls-e2e-").FullName;
    private readonly List<OrchService> _services = [];

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var s in _services) await s.DisposeAsync();
        try { Directory.Delete(_dir, recursive: true); }
        catch (IOException) { /* a leftover temp folder is harmless */ }
    }

    [Fact]
    public async Task A_sweep_runs_end_to_end_over_tls_with_a_worker_presenting_its_client_certificate()
    {
        using var ca = new TestCa(_dir, "orch");
        var (certificate, key) = ca.Issue("coordinator", server: true);
        var (workerCertificate, workerKey) = ca.Issue("worker", server: false);
        var port = RedisServer.FreePort();
        var address = $"https://127.0.0.1:{port.ToString(CultureInfo.InvariantCulture)}";
        _services.Add(OrchService.Start(_dir, "coordinator", "--port", port.ToString(CultureInfo.InvariantCulture), "--state-dir", "state",
            "--gradient-port", "0", "--tls-cert", certificate, "--tls-key", key, "--tls-client-ca", ca.CaFile));
        _services.Add(OrchService.Start(_dir, "worker", "--coordinator", address, "--id", "w1", "--threads", "1", "--work-dir", "work",
            "--tls-ca", ca.CaFile, "--tls-client-cert", workerCertificate, "--tls-client-key", workerKey));
        File.WriteAllText(Path.Combine(_dir, "sweep.yaml"), """
            name: tls
            data: { name: fashion-mnist, limitTrain: 600, limitTest: 200 }
            model: { name: simple-cnn }
            trial: { epochs: 1, batchSize: 50 }
            parameters:
              optimizer.lr: { values: [0.05] }
            search: { method: grid }
            """);
        var trusting = new Dictionary<string, string> { ["ORCH_TLS_CA"] = ca.CaFile };

        OrchProcess.Result submit = null!;
        for (var attempt = 0; attempt < 60; attempt++)
        {
            submit = await Task.Run(() => OrchProcess.RunWith(_dir, trusting, "submit", "sweep.yaml", "--coordinator", address, "--watch", "--json"));
            if (submit.ExitCode == 0 || !submit.StdErr.Contains("cannot reach", StringComparison.Ordinal)) break;
            await Task.Delay(500); // the coordinator is still starting
        }
        Assert.True(submit.ExitCode == 0, submit + "\n" + string.Join("\n", _services.Select(s => s.Output)));
        Assert.Equal("completed", submit.LastJson.GetProperty("state").GetString());
        var id = submit.LastJson.GetProperty("sweep").GetString()!;

        // The worker uploaded its checkpoint over the same TLS channel: it comes back and loads.
        var best = await Task.Run(() => OrchProcess.RunWith(_dir, trusting, "best", id, "--download", "best.ckpt", "--coordinator", address));
        Assert.True(best.ExitCode == 0, best.ToString());
        Assert.True(new FileInfo(Path.Combine(_dir, "best.ckpt")).Length > 0);

        // Without the CA the command says what is wrong, in one line.
        var untrusted = await Task.Run(() => OrchProcess.Run(_dir, "sweeps", "--coordinator", address));
        Assert.Contains("certificate is not trusted (give its CA in ORCH_TLS_CA)", OrchProcess.AssertOneLineError(untrusted, 1), StringComparison.Ordinal);
    }
}

using Grpc.Core;
using Grpc.Net.Client;
using Orchestrator.Configuration;
using Orchestrator.Protocol.V1;
using Orchestrator.TestSupport;

namespace Orchestrator.Coordinator.FunctionalTests;

/// <summary>
/// TLS on the coordinator's gRPC port over real connections: certificates made by a test CA in
/// PEM files, clients that verify against that CA, and mutual TLS for workers.
/// </summary>
public sealed class TlsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("orch-tls-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static GrpcChannel Channel(Uri address, string? ca, (string Certificate, string Key)? client = null) =>
        GrpcChannel.ForAddress(address, new GrpcChannelOptions { HttpHandler = TlsFiles.ClientHandler(ca, client?.Certificate, client?.Key) });

    [Fact]
    public async Task Clients_that_trust_the_ca_talk_tls_and_workers_must_present_a_certificate_the_client_ca_signed()
    {
        using var ca = new TestCa(_dir, "orch");
        using var rogue = new TestCa(_dir, "rogue");
        var (certificate, key) = ca.Issue("coordinator", server: true);
        await using var coordinator = await TestCoordinator.StartAsync(args:
            ["--Listen:TlsCertificate", certificate, "--Listen:TlsKey", key, "--Listen:TlsClientCa", ca.CaFile]);
        Assert.Equal("https", coordinator.Address.Scheme);

        // A user's client that trusts the CA: the API works, without a client certificate.
        using (var trusted = Channel(coordinator.Address, ca.CaFile))
            Assert.Empty((await new Protocol.V1.Sweeps.SweepsClient(trusted).ListSweepsAsync(new ListSweepsRequest()).ResponseAsync.DefaultTimeout()).Sweeps);

        // A client that trusts only another CA, or speaks plain text to the TLS port, gets nowhere.
        using (var wrongCa = Channel(coordinator.Address, rogue.CaFile))
        {
            var e = await Assert.ThrowsAsync<RpcException>(() => new Protocol.V1.Sweeps.SweepsClient(wrongCa).ListSweepsAsync(new ListSweepsRequest()).ResponseAsync.DefaultTimeout());
            Assert.Contains("The SSL connection could not be established", e.Status.Detail, StringComparison.Ordinal);
        }
        using (var plain = GrpcChannel.ForAddress(new UriBuilder(coordinator.Address) { Scheme = "http" }.Uri))
            await Assert.ThrowsAsync<RpcException>(() => new Protocol.V1.Sweeps.SweepsClient(plain).ListSweepsAsync(new ListSweepsRequest()).ResponseAsync.DefaultTimeout());

        // Workers: without a client certificate refused, with one the client CA signed welcomed,
        // with one another CA signed turned away in the handshake.
        using (var noCertificate = Channel(coordinator.Address, ca.CaFile))
        {
            var e = await Assert.ThrowsAsync<RpcException>(() => FakeWorker.HelloAsync(noCertificate, "w0"));
            Assert.Equal(StatusCode.Unauthenticated, e.StatusCode);
            Assert.Contains("client certificate", e.Status.Detail, StringComparison.Ordinal);
        }
        using (var worker = Channel(coordinator.Address, ca.CaFile, ca.Issue("worker", server: false)))
            Assert.NotNull((await FakeWorker.HelloAsync(worker, "w1")).Welcome);
        using (var impostor = Channel(coordinator.Address, ca.CaFile, rogue.Issue("impostor", server: false)))
        {
            // The server ends the handshake: depending on when, the client sees a failed call or a broken connection.
            var refused = await Record.ExceptionAsync(() => FakeWorker.HelloAsync(impostor, "w2"));
            Assert.True(refused is RpcException or IOException or HttpRequestException, $"expected a refused connection, got {refused?.ToString() ?? "none"}");
        }
    }

    [Fact]
    public async Task A_missing_or_unreadable_tls_file_is_one_error_naming_it()
    {
        var missing = Path.Combine(_dir, "none.crt");
        var settings = await Assert.ThrowsAnyAsync<Exception>(() => TestCoordinator.StartAsync(args: ["--Listen:TlsCertificate", missing, "--Listen:TlsKey", missing]));
        Assert.Contains($"{missing}: no such file", settings.Message, StringComparison.Ordinal);

        var garbage = Path.Combine(_dir, "garbage.pem");
        await File.WriteAllTextAsync(garbage, "not a certificate");
        var e = Assert.Throws<InvalidDataException>(() => TlsFiles.LoadCertificate(garbage, garbage));
        Assert.StartsWith($"{garbage} with key {garbage}: not a PEM certificate", e.Message, StringComparison.Ordinal);
        Assert.Contains("holds no PEM certificate", Assert.Throws<InvalidDataException>(() => TlsFiles.LoadAuthorities(garbage)).Message, StringComparison.Ordinal);
        Assert.Contains("no such CA certificate file", Assert.Throws<InvalidDataException>(() => TlsFiles.ClientHandler(missing, null, null)).Message, StringComparison.Ordinal);
        // Only a key, or only a certificate: refused before anything connects.
        Assert.Contains("needs its private key", Assert.Throws<InvalidDataException>(() => TlsFiles.ClientHandler(null, garbage, null)).Message, StringComparison.Ordinal);
    }
}

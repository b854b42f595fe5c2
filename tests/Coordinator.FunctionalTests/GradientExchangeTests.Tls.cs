using Orchestrator.Configuration;
using Orchestrator.TestSupport;
using Orchestrator.Worker.Distributed;

namespace Orchestrator.Coordinator.FunctionalTests;

/// <summary>The gradient socket and the gradient stream of a coordinator that serves TLS, with mutual TLS for workers.</summary>
public sealed partial class GradientExchangeTests
{
    [Fact]
    public async Task With_tls_on_ranks_exchange_over_tls_checked_against_the_ca_and_plain_text_a_wrong_ca_or_no_client_certificate_is_refused()
    {
        var dir = Directory.CreateTempSubdirectory("orch-gradient-tls-").FullName;
        try
        {
            using var ca = new TestCa(dir, "orch");
            using var rogue = new TestCa(dir, "rogue");
            var (certificate, key) = ca.Issue("coordinator", server: true);
            var worker = ca.Issue("worker", server: false);
            await using var coordinator = await TestCoordinator.StartAsync(
                args: ["--Listen:TlsCertificate", certificate, "--Listen:TlsKey", key, "--Listen:TlsClientCa", ca.CaFile],
                tls: (ca.CaFile, worker.Certificate, worker.Key));
            var (workers, assignments) = await StartTrialAsync(coordinator, 2);
            var (host, port) = CoordinatorSocketAllReduce.ResolveEndpoint(assignments[0].GradientEndpoint, coordinator.Address);
            try
            {
                // Refused before any hello: plain text, a server the client cannot verify, no client certificate.
                var plain = Options(assignments[0]);
                await Assert.ThrowsAsync<CollectiveException>(() => CoordinatorSocketAllReduce.ConnectAsync(plain, host, port, CancellationToken.None)).DefaultTimeout();
                var wrongCa = Options(assignments[0]);
                wrongCa.Tls = TlsFiles.ClientAuthentication(rogue.CaFile, worker.Certificate, worker.Key);
                var e = await Assert.ThrowsAsync<CollectiveException>(() => CoordinatorSocketAllReduce.ConnectAsync(wrongCa, host, port, CancellationToken.None)).DefaultTimeout();
                Assert.Contains("TLS handshake", e.Message, StringComparison.Ordinal);
                var anonymous = Options(assignments[0]);
                anonymous.Tls = TlsFiles.ClientAuthentication(ca.CaFile, null, null);
                anonymous.ConnectTimeout = TimeSpan.FromSeconds(5);
                await Assert.ThrowsAsync<CollectiveException>(() => CoordinatorSocketAllReduce.ConnectAsync(anonymous, host, port, CancellationToken.None)).DefaultTimeout();

                // The trial's ranks with the worker's certificate: rank 0 on the TCP gradient socket,
                // rank 1 on the gRPC gradient stream, both TLS, one exchange and exact means.
                var socketRank = Options(assignments[0]);
                socketRank.Tls = TlsFiles.ClientAuthentication(ca.CaFile, worker.Certificate, worker.Key);
                var streamRank = Options(assignments[1]);
                streamRank.Tls = TlsFiles.ClientAuthentication(ca.CaFile, worker.Certificate, worker.Key);
                var ranks = await Task.WhenAll(
                    Task.Run<IAllReduce>(async () => await CoordinatorSocketAllReduce.ConnectAsync(socketRank, host, port, CancellationToken.None)),
                    Task.Run<IAllReduce>(async () => await CoordinatorAllReduce.ConnectAsync(streamRank, coordinator.Address, CancellationToken.None))).DefaultTimeout();
                try
                {
                    await AssertExactMeansAsync(ranks, 2 * ChunkFloats + 5);
                }
                finally
                {
                    await DisposeAllAsync(ranks);
                }
            }
            finally
            {
                foreach (var w in workers) await w.DisposeAsync();
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}

using System.Net;
using System.Net.Sockets;
using System.Diagnostics;
using Orchestrator.TestSupport;
using Orchestrator.Worker.Distributed;
using Xunit.Abstractions;

namespace Orchestrator.Worker.UnitTests.Distributed;

public sealed class RingAllReduceTests(ITestOutputHelper output)
{
    // 16 floats per chunk: small buffers already cross chunk boundaries.
    private const int SmallChunkBytes = 64;

    public static TheoryData<int, Transport, int> WorldsTransportsAndLengths()
    {
        var data = new TheoryData<int, Transport, int>();
        // Lengths: empty, smaller than W, not divisible by W, not divisible by the chunk, exact multiples.
        int[] lengths = [0, 1, 2, 3, 5, 16, 17, 48, 64, 97, 1000];
        foreach (var transport in new[] { Transport.Tcp, Transport.Unix })
        for (var world = 1; world <= 4; world++)
        foreach (var length in lengths)
            data.Add(world, transport, length);
        return data;
    }

    [Theory]
    [MemberData(nameof(WorldsTransportsAndLengths))]
    public async Task AllReduce_gives_every_rank_the_exact_mean_with_identical_bits(int world, Transport transport, int length)
    {
        await using var group = await RingGroup.CreateAsync(world, transport, o => o.ChunkBytes = SmallChunkBytes);
        var buffers = IntegerInputs(world, length);
        var expected = ExpectedMean(buffers);

        await group.AllReduceAsync(buffers);

        for (var r = 0; r < world; r++) AssertBitsEqual(expected, buffers[r]);
    }

    [Theory]
    [InlineData(2, Transport.Tcp)]
    [InlineData(3, Transport.Unix)]
    [InlineData(4, Transport.Tcp)]
    [InlineData(4, Transport.Unix)]
    public async Task A_large_buffer_with_the_default_chunk_reduces_exactly(int world, Transport transport)
    {
        await using var group = await RingGroup.CreateAsync(world, transport);
        var buffers = IntegerInputs(world, 1_000_003); // 4 MB, several default chunks per segment, uneven split
        var expected = ExpectedMean(buffers);

        await group.AllReduceAsync(buffers);

        for (var r = 0; r < world; r++) AssertBitsEqual(expected, buffers[r]);
    }

    [Fact]
    public async Task The_sum_option_gives_the_exact_sum()
    {
        await using var group = await RingGroup.CreateAsync(3, Transport.Tcp, o => { o.Operation = ReduceOperation.Sum; o.ChunkBytes = SmallChunkBytes; });
        var buffers = IntegerInputs(3, 101);
        var expected = new float[101];
        for (var i = 0; i < expected.Length; i++) expected[i] = buffers[0][i] + buffers[1][i] + buffers[2][i];

        await group.AllReduceAsync(buffers);

        for (var r = 0; r < 3; r++) AssertBitsEqual(expected, buffers[r]);
    }

    [Theory]
    [InlineData(Transport.Tcp)]
    [InlineData(Transport.Unix)]
    public async Task Random_gradients_end_bit_identical_on_all_ranks_and_the_same_on_every_run(Transport transport)
    {
        const int world = 4, length = 10_007;
        float[]? firstRun = null;
        for (var run = 0; run < 2; run++)
        {
            await using var group = await RingGroup.CreateAsync(world, transport, o => o.ChunkBytes = 1024);
            var buffers = RandomInputs(world, length, seed: 7);
            var reference = MeanInDouble(buffers);

            await group.AllReduceAsync(buffers);

            for (var r = 1; r < world; r++) AssertBitsEqual(buffers[0], buffers[r]);
            for (var i = 0; i < length; i++) Assert.True(Math.Abs(buffers[0][i] - reference[i]) <= 1e-6 * (1 + Math.Abs(reference[i])), $"element {i}");
            if (firstRun is null) firstRun = buffers[0];
            else AssertBitsEqual(firstRun, buffers[0]);
        }
    }

    [Fact]
    public async Task Consecutive_collectives_reuse_the_ring()
    {
        await using var group = await RingGroup.CreateAsync(3, Transport.Unix, o => o.ChunkBytes = SmallChunkBytes);
        for (var step = 0; step < 20; step++)
        {
            var buffers = IntegerInputs(3, 50 + step, offset: step);
            var expected = ExpectedMean(buffers);
            await group.AllReduceAsync(buffers);
            for (var r = 0; r < 3; r++) AssertBitsEqual(expected, buffers[r]);
        }
    }

    [Theory]
    [InlineData(2, Transport.Tcp, 1000)]
    [InlineData(3, Transport.Unix, 1001)]
    [InlineData(4, Transport.Tcp, 3)]
    [InlineData(4, Transport.Unix, 100_003)]
    public async Task Bf16_wire_is_within_bf16_tolerance_and_identical_on_all_ranks(int world, Transport transport, int length)
    {
        await using var group = await RingGroup.CreateAsync(world, transport, o => { o.Wire = WireFormat.Bf16; o.ChunkBytes = 256; });
        var buffers = RandomInputs(world, length, seed: 3);
        var reference = MeanInDouble(buffers);
        var largest = buffers.Max(b => b.Length == 0 ? 0 : b.Max(Math.Abs));

        await group.AllReduceAsync(buffers);

        for (var r = 1; r < world; r++) AssertBitsEqual(buffers[0], buffers[r]);
        // Each of the W−1 hops rounds a partial sum (≤ W·max) to 8 mantissa bits, then the mean is rounded once more.
        var tolerance = (world * world * largest / world + largest) * Math.Pow(2, -8);
        for (var i = 0; i < length; i++)
        {
            Assert.True(Math.Abs(buffers[0][i] - reference[i]) <= tolerance, $"element {i}: {buffers[0][i]} vs {reference[i]}");
            Assert.Equal(0u, BitConverter.SingleToUInt32Bits(buffers[0][i]) & 0xFFFF); // a bf16 value
        }
    }

    [Fact]
    public async Task Ranks_with_different_buffer_lengths_fail_with_a_mismatch()
    {
        await using var group = await RingGroup.CreateAsync(3, Transport.Tcp, o => o.Timeout = TimeSpan.FromSeconds(20));
        var calls = new[] { 10, 10, 11 }.Select((n, r) => group.Ranks[r].AllReduceAsync(new float[n], CancellationToken.None).AsTask()).ToArray();

        foreach (var call in calls)
        {
            var error = await Assert.ThrowsAsync<CollectiveException>(() => call.DefaultTimeout());
            Assert.Contains(error.Failure, new[] { CollectiveFailure.Mismatch, CollectiveFailure.PeerClosed });
        }
    }

    [Theory]
    [InlineData(Transport.Tcp)]
    [InlineData(Transport.Unix)]
    public async Task A_rank_that_never_joins_makes_the_others_fail_within_the_timeout(Transport transport)
    {
        var timeout = TimeSpan.FromSeconds(1);
        await using var group = await RingGroup.CreateAsync(4, transport, o => o.Timeout = timeout);
        var clock = Stopwatch.StartNew();
        // Rank 2 stalls: it never calls. Large enough that the others cannot finish without it.
        var calls = Enumerable.Range(0, 4).Where(r => r != 2)
            .Select(r => group.Ranks[r].AllReduceAsync(new float[200_000], CancellationToken.None).AsTask()).ToArray();

        foreach (var call in calls)
        {
            var error = await Assert.ThrowsAsync<CollectiveException>(() => call.DefaultTimeout());
            output.WriteLine(error.Message);
            Assert.Contains(error.Failure, new[] { CollectiveFailure.Timeout, CollectiveFailure.PeerClosed });
        }
        Assert.True(clock.Elapsed < timeout * 4, $"took {clock.Elapsed}");

        // The stalled rank finds its ring broken as soon as it calls.
        var late = await Assert.ThrowsAsync<CollectiveException>(() => group.Ranks[2].AllReduceAsync(new float[200_000], CancellationToken.None).AsTask().DefaultTimeout());
        Assert.Contains(late.Failure, new[] { CollectiveFailure.Timeout, CollectiveFailure.PeerClosed });
    }

    [Theory]
    [InlineData(Transport.Tcp)]
    [InlineData(Transport.Unix)]
    public async Task A_rank_that_stops_mid_collective_makes_the_others_fail_at_once_naming_their_peer(Transport transport)
    {
        // A long timeout: the failure must come from the closed connection, not from waiting.
        var timeout = TimeSpan.FromSeconds(30);
        await using var group = await RingGroup.CreateAsync(4, transport, o => o.Timeout = timeout);
        var clock = Stopwatch.StartNew();
        var calls = Enumerable.Range(0, 3)
            .Select(r => group.Ranks[r].AllReduceAsync(new float[2_000_000], CancellationToken.None).AsTask()).ToArray();
        await Task.Delay(100);
        await group.Ranks[3].DisposeAsync().AsTask().DefaultTimeout();

        var errors = new List<CollectiveException>();
        foreach (var call in calls) errors.Add(await Assert.ThrowsAsync<CollectiveException>(() => call.DefaultTimeout()));
        Assert.True(clock.Elapsed < timeout / 3, $"took {clock.Elapsed}");
        foreach (var e in errors) output.WriteLine(e.Message);
        Assert.All(errors, e => Assert.Equal(CollectiveFailure.PeerClosed, e.Failure));
        // Rank 0 receives from rank 3, rank 2 sends to it: both name it.
        Assert.Equal(3, errors[0].PeerRank);
        Assert.Contains("rank 3", errors[0].Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Cancelling_one_rank_cancels_it_and_fails_the_others()
    {
        await using var group = await RingGroup.CreateAsync(3, Transport.Unix, o => o.Timeout = TimeSpan.FromSeconds(30));
        using var cts = new CancellationTokenSource();
        var cancelled = group.Ranks[0].AllReduceAsync(new float[1_000_000], cts.Token).AsTask();
        var others = new[] { 1 }.Select(r => group.Ranks[r].AllReduceAsync(new float[1_000_000], CancellationToken.None).AsTask()).ToArray();
        await Task.Delay(50);
        await cts.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled.DefaultTimeout());
        foreach (var other in others) await Assert.ThrowsAsync<CollectiveException>(() => other.DefaultTimeout());
    }

    [Fact]
    public async Task Connecting_to_a_rank_that_never_starts_fails_within_the_connect_timeout()
    {
        var directory = Directory.CreateTempSubdirectory("orch-ring-").FullName;
        try
        {
            var endpoints = new[] { RingEndpoint.Unix(Path.Combine(directory, "0.sock")), RingEndpoint.Unix(Path.Combine(directory, "1.sock")) };
            var options = new RingAllReduceOptions { Rank = 0, Endpoints = endpoints, ConnectTimeout = TimeSpan.FromMilliseconds(500) };
            var clock = Stopwatch.StartNew();

            var error = await Assert.ThrowsAsync<CollectiveException>(() => RingAllReduce.ConnectAsync(options, CancellationToken.None).DefaultTimeout());

            Assert.Equal(CollectiveFailure.ConnectFailed, error.Failure);
            Assert.Equal(1, error.PeerRank);
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"took {clock.Elapsed}");
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public async Task Ranks_configured_with_different_wire_formats_refuse_to_form_a_ring()
    {
        var error = await Assert.ThrowsAsync<CollectiveException>(() =>
            RingGroup.CreateAsync(2, Transport.Tcp, o => { o.Wire = o.Rank == 0 ? WireFormat.Fp32 : WireFormat.Bf16; o.ConnectTimeout = TimeSpan.FromSeconds(5); }));
        Assert.Equal(CollectiveFailure.ConnectFailed, error.Failure);
    }

    [Theory]
    [InlineData(Transport.Tcp)]
    [InlineData(Transport.Unix)]
    public async Task Ranks_holding_the_assignment_s_secret_form_a_ring_and_a_rank_with_another_secret_is_refused(Transport transport)
    {
        var secret = System.Security.Cryptography.RandomNumberGenerator.GetBytes(32);
        await using (var ring = await RingGroup.CreateAsync(3, transport, o => o.Secret = secret))
        {
            float[][] buffers = [[1, 2], [3, 4], [5, 6]];
            await ring.AllReduceAsync(buffers);
            Assert.All(buffers, b => Assert.Equal([3f, 4f], b));
        }

        var other = System.Security.Cryptography.RandomNumberGenerator.GetBytes(32);
        var error = await Assert.ThrowsAsync<CollectiveException>(() =>
            RingGroup.CreateAsync(2, transport, o => { o.Secret = o.Rank == 0 ? secret : other; o.ConnectTimeout = TimeSpan.FromSeconds(5); }));
        Assert.Equal(CollectiveFailure.ConnectFailed, error.Failure);
        Assert.Contains("does not hold the ring's secret", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_replayed_handshake_does_not_answer_a_fresh_nonce_and_is_refused()
    {
        var secret = System.Security.Cryptography.RandomNumberGenerator.GetBytes(32);
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(8);
        var port = ((IPEndPoint)listener.LocalEndPoint!).Port;
        // Rank 1 of 2 waits for rank 0 on its listener; rank 0's own endpoint never answers.
        var endpoints = new[] { RingEndpoint.Tcp("127.0.0.1", FreePort()), RingEndpoint.Tcp("127.0.0.1", port) };
        var rank1 = RingAllReduce.ConnectAsync(new RingAllReduceOptions { Rank = 1, Endpoints = endpoints, Secret = secret, ConnectTimeout = TimeSpan.FromSeconds(5) }, listener, CancellationToken.None);

        using var intruder = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await intruder.ConnectAsync(IPAddress.Loopback, port);
        var nonce = new byte[WireProtocol.NonceBytes];
        Assert.Equal(nonce.Length, await intruder.ReceiveAsync(nonce, SocketFlags.None));
        // A hello and proof recorded from another handshake (another nonce), even with the right secret.
        var hello = new byte[WireProtocol.HelloBytes + WireProtocol.ProofBytes];
        WireProtocol.WriteHello(hello, 0, 2, WireFormat.Fp32, ReduceOperation.Mean);
        WireProtocol.Prove(secret, new byte[WireProtocol.NonceBytes], hello.AsSpan(0, WireProtocol.HelloBytes), hello.AsSpan(WireProtocol.HelloBytes));
        await intruder.SendAsync(hello, SocketFlags.None);
        var verdict = new byte[1];
        Assert.Equal(1, await intruder.ReceiveAsync(verdict, SocketFlags.None));
        Assert.Equal(WireProtocol.WrongSecret, verdict[0]);
        var error = await Assert.ThrowsAsync<CollectiveException>(() => rank1.DefaultTimeout());
        Assert.Equal(CollectiveFailure.ConnectFailed, error.Failure);
    }

    private static int FreePort()
    {
        using var l = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        l.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)l.LocalEndPoint!).Port;
    }

    [Theory]
    [InlineData("127.0.0.1:5000", false, "127.0.0.1", 5000)]
    [InlineData("worker-3.pods:29500", false, "worker-3.pods", 29500)]
    [InlineData("[::1]:7", false, "::1", 7)]
    [InlineData("unix:/tmp/r0.sock", true, null, 0)]
    public void Endpoints_parse_host_port_and_unix_paths(string text, bool unix, string? host, int port)
    {
        var endpoint = RingEndpoint.Parse(text);
        Assert.Equal(unix, endpoint.IsUnix);
        Assert.Equal(host, endpoint.Host);
        Assert.Equal(port, endpoint.Port);
        Assert.Equal(text, endpoint.ToString());
    }

    [Fact]
    public void Segments_cover_the_buffer_once_even_when_it_is_shorter_than_the_ring()
    {
        foreach (var (length, world) in new[] { (0, 3), (2, 4), (10, 3), (11_200_000, 4), (17, 1) })
        {
            var covered = 0;
            for (var s = 0; s < world; s++)
            {
                var (start, count) = RingAllReduce.SegmentBounds(length, world, s);
                Assert.Equal(covered, start);
                covered += count;
            }
            Assert.Equal(length, covered);
        }
    }

    /// <summary>Small integers: every partial sum is exact in fp32, whatever the order.</summary>
    private static float[][] IntegerInputs(int world, int length, int offset = 0) =>
        Enumerable.Range(0, world).Select(r =>
            Enumerable.Range(0, length).Select(i => (float)(((i + offset) * 7 + r * 13) % 101 - 50)).ToArray()).ToArray();

    private static float[][] RandomInputs(int world, int length, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, world).Select(_ =>
            Enumerable.Range(0, length).Select(_ => (float)(random.NextDouble() * 2 - 1) * 0.01f).ToArray()).ToArray();
    }

    /// <summary>The exact sum (integers), divided once: the correctly rounded mean.</summary>
    private static float[] ExpectedMean(float[][] buffers)
    {
        var expected = new float[buffers[0].Length];
        for (var i = 0; i < expected.Length; i++)
        {
            var sum = 0f;
            foreach (var b in buffers) sum += b[i];
            expected[i] = sum / buffers.Length;
        }
        return expected;
    }

    private static double[] MeanInDouble(float[][] buffers) =>
        Enumerable.Range(0, buffers[0].Length).Select(i => buffers.Average(b => (double)b[i])).ToArray();

    private static void AssertBitsEqual(float[] expected, float[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToUInt32Bits(expected[i]) != BitConverter.SingleToUInt32Bits(actual[i]))
                Assert.Fail($"element {i}: expected {expected[i]} ({BitConverter.SingleToUInt32Bits(expected[i]):X8}), got {actual[i]} ({BitConverter.SingleToUInt32Bits(actual[i]):X8})");
    }
}

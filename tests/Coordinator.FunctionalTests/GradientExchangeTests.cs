using System.Diagnostics;
using System.Net.Sockets;
using Google.Protobuf;
using Grpc.Core;
using Orchestrator.Protocol;
using Orchestrator.Protocol.V1;
using Orchestrator.TestSupport;
using Orchestrator.Worker.Distributed;
using TorchSharp;
using WireFormat = Orchestrator.Worker.Distributed.WireFormat;

namespace Orchestrator.Coordinator.FunctionalTests;

/// <summary>
/// The <c>coordinator</c> aggregation mode end to end: a real coordinator, a data-parallel trial
/// assigned to fake workers, and the worker's real clients, over both data planes: the gRPC stream
/// (<see cref="CoordinatorAllReduce"/>) and the gradient socket (<see cref="CoordinatorSocketAllReduce"/>).
/// </summary>
public sealed partial class GradientExchangeTests
{
    /// <summary>gRPC stream; gradient socket over TCP, over its Unix twin, and in shared-memory mode.</summary>
    public enum Transport { Grpc, Socket, Unix, SharedMemory }

    private const int ChunkBytes = CoordinatorAllReduceOptions.MinChunkBytes;
    private const int ChunkFloats = ChunkBytes / sizeof(float);

    [Theory]
    [InlineData(Transport.Grpc, 2, 3 * ChunkFloats)]
    [InlineData(Transport.Grpc, 3, 2 * ChunkFloats + 77)]
    [InlineData(Transport.Grpc, 3, 100)]
    [InlineData(Transport.Socket, 2, 3 * ChunkFloats)]
    [InlineData(Transport.Socket, 2, 3 * ChunkFloats + 1234)]
    [InlineData(Transport.Socket, 3, 2 * ChunkFloats)]
    [InlineData(Transport.Socket, 3, 2 * ChunkFloats + 77)]
    [InlineData(Transport.Socket, 3, 100)]
    [InlineData(Transport.Unix, 2, 3 * ChunkFloats + 1234)]
    [InlineData(Transport.SharedMemory, 2, 3 * ChunkFloats)]
    [InlineData(Transport.SharedMemory, 3, 2 * ChunkFloats + 77)]
    [InlineData(Transport.SharedMemory, 3, 100)]
    public async Task Ranks_get_the_exact_mean_with_identical_bits(Transport transport, int world, int floats)
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        var (workers, assignments) = await StartTrialAsync(coordinator, world);
        Assert.All(assignments, a => Assert.Equal(Protocol.V1.AggregationMode.Coordinator, a.Aggregation));
        var ranks = await ConnectAsync(coordinator, assignments, transport);
        try
        {
            await AssertExactMeansAsync(ranks, floats);
        }
        finally
        {
            await DisposeAllAsync(ranks);
            foreach (var w in workers) await w.DisposeAsync();
        }
    }

    [Fact]
    public async Task Assignments_name_the_gradient_socket_and_ranks_on_either_data_plane_share_one_exchange()
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        var (workers, assignments) = await StartTrialAsync(coordinator, 3);
        Assert.NotNull(coordinator.GradientPort);
        Assert.All(assignments, a => Assert.Equal($":{coordinator.GradientPort}", a.GradientEndpoint));
        // Ranks 0 and 2 on the socket, rank 1 on the gRPC stream: one session, the same bits.
        var ranks = await Task.WhenAll(
            Connect(coordinator, assignments[0], Transport.Socket),
            Connect(coordinator, assignments[1], Transport.Grpc),
            Connect(coordinator, assignments[2], Transport.Socket)).DefaultTimeout();
        try
        {
            await AssertExactMeansAsync(ranks, 2 * ChunkFloats + 5);
        }
        finally
        {
            await DisposeAllAsync(ranks);
            foreach (var w in workers) await w.DisposeAsync();
        }
    }

    [Fact]
    public async Task Ranks_in_shared_memory_on_the_socket_and_on_the_stream_share_one_exchange_and_leave_no_segment_files()
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        var (workers, assignments) = await StartTrialAsync(coordinator, 3);
        Assert.All(assignments, a => Assert.Equal(coordinator.GradientSocketPath, a.GradientSocketPath));
        Assert.True(File.Exists(coordinator.GradientSocketPath));
        var ranks = await Task.WhenAll(
            Connect(coordinator, assignments[0], Transport.SharedMemory),
            Connect(coordinator, assignments[1], Transport.Grpc),
            Connect(coordinator, assignments[2], Transport.Socket)).DefaultTimeout();
        var ours = $"{Protocol.SharedMemorySegment.Prefix}{Environment.ProcessId}-*";
        try
        {
            await AssertExactMeansAsync(ranks, 3 * ChunkFloats + 11);
            // Unlinked as soon as the rank mapped it: nothing in /dev/shm outlives the processes.
            Assert.Empty(Directory.EnumerateFiles(Protocol.SharedMemorySegment.Folder, ours));
        }
        finally
        {
            await DisposeAllAsync(ranks);
            foreach (var w in workers) await w.DisposeAsync();
        }
        Assert.Empty(Directory.EnumerateFiles(Protocol.SharedMemorySegment.Folder, ours));
    }

    [Theory]
    [InlineData(Transport.Grpc, 2)]
    [InlineData(Transport.Socket, 2)]
    [InlineData(Transport.Socket, 3)]
    [InlineData(Transport.SharedMemory, 3)]
    public async Task With_bf16_on_the_wire_ranks_get_the_rounded_mean_of_their_rounded_values_with_identical_bits(Transport transport, int world)
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        var (workers, assignments) = await StartTrialAsync(coordinator, world);
        var ranks = await Task.WhenAll(assignments.Select(a => Connect(coordinator, a, transport, WireFormat.Bf16))).DefaultTimeout();
        try
        {
            foreach (var length in new[] { 2 * ChunkFloats + 77, 100 })
            {
                var buffers = Enumerable.Range(0, world).Select(r => Values(r, length)).ToArray();
                // The contract: each rank's values rounded to bf16, summed in fp32 in rank order,
                // divided once by W, and the mean rounded to bf16.
                var expected = RoundBf16(Mean(buffers.Select(RoundBf16).ToArray()));
                await Task.WhenAll(ranks.Select((rank, r) => rank.AllReduceAsync(buffers[r], CancellationToken.None).AsTask())).DefaultTimeout();
                foreach (var buffer in buffers)
                    Assert.Equal(Bits(expected), Bits(buffer));
            }
        }
        finally
        {
            await DisposeAllAsync(ranks);
            foreach (var w in workers) await w.DisposeAsync();
        }
    }

    [Fact]
    public async Task Ranks_that_disagree_about_the_wire_format_are_refused_when_they_join()
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        var (workers, assignments) = await StartTrialAsync(coordinator, 2);
        try
        {
            // Rank 0 joins with fp32 and waits for the gang; rank 1 says bf16 and is refused at once.
            var first = Connect(coordinator, assignments[0], Transport.Socket, WireFormat.Fp32);
            await Task.Delay(300);
            var e = await Assert.ThrowsAsync<CollectiveException>(() => Connect(coordinator, assignments[1], Transport.Socket, WireFormat.Bf16).DefaultTimeout());
            Assert.Equal(CollectiveFailure.Mismatch, e.Failure);
            Assert.Contains("bf16", e.Message, StringComparison.Ordinal);
            Assert.False(first.IsCompletedSuccessfully);
        }
        finally
        {
            foreach (var w in workers) await w.DisposeAsync();
        }
    }

    [Fact]
    public async Task Metrics_count_the_bytes_of_each_data_plane_the_live_sessions_and_failures_by_kind()
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        var bytes = new System.Collections.Concurrent.ConcurrentDictionary<string, long>();
        var failures = new System.Collections.Concurrent.ConcurrentDictionary<string, long>();
        long sessions = 0;
        using var listener = new System.Diagnostics.Metrics.MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (ReferenceEquals(instrument.Meter, coordinator.GradientMetrics.Meter)) l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            var label = tags.Length > 0 ? (string)tags[0].Value! : "";
            switch (instrument.Name)
            {
                case "orch_gradient_exchange_received": bytes.AddOrUpdate(label, value, (_, v) => v + value); break;
                case "orch_gradient_exchange_failures": failures.AddOrUpdate(label, value, (_, v) => v + value); break;
                case "orch_gradient_exchange_sessions": Interlocked.Add(ref sessions, value); break;
            }
        });
        listener.Start();

        var (workers, assignments) = await StartTrialAsync(coordinator, 3);
        var ranks = await Task.WhenAll(
            Connect(coordinator, assignments[0], Transport.SharedMemory),
            Connect(coordinator, assignments[1], Transport.Grpc),
            Connect(coordinator, assignments[2], Transport.Socket)).DefaultTimeout();
        try
        {
            Assert.Equal(1, Interlocked.Read(ref sessions));
            await Task.WhenAll(ranks.Select(r => r.AllReduceAsync(new float[2 * ChunkFloats + 10], CancellationToken.None).AsTask())).DefaultTimeout();
            foreach (var plane in new[] { "shm", "grpc", "tcp" })
                Assert.Equal((2 * ChunkFloats + 10) * sizeof(float), bytes.GetValueOrDefault(plane));
            // Two ranks disagree: one failure of kind "mismatch" for the session.
            var calls = ranks.Select((r, i) => r.AllReduceAsync(new float[i == 0 ? 10 : 11], CancellationToken.None).AsTask()).ToArray();
            foreach (var call in calls) await Assert.ThrowsAsync<CollectiveException>(() => call.DefaultTimeout());
            Assert.Equal(1, failures.GetValueOrDefault("mismatch"));
        }
        finally
        {
            await DisposeAllAsync(ranks);
            foreach (var w in workers) await w.DisposeAsync();
        }
        await EventuallyAsync(() => Interlocked.Read(ref sessions) == 0, "the session to close");
    }

    private static async Task EventuallyAsync(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"waited 10 s for {what}");
            await Task.Delay(50);
        }
    }

    [Fact]
    public async Task A_starting_coordinator_removes_the_unix_socket_a_killed_one_left_behind()
    {
        // A process id that runs nothing: its owner was killed before it could remove the file.
        var dead = Enumerable.Range(3_000_000, 1000).First(pid =>
        {
            try
            {
                using var p = Process.GetProcessById(pid);
                return false;
            }
            catch (ArgumentException)
            {
                return true;
            }
        });
        var stale = Path.Combine(Path.GetTempPath(), $"{Grpc.Gradients.GradientSocketServer.UnixSocketPrefix}{dead}-{Guid.NewGuid():N}.sock");
        await File.WriteAllTextAsync(stale, "");
        await using var coordinator = await TestCoordinator.StartAsync();
        Assert.False(File.Exists(stale));
        Assert.Contains($"-{Environment.ProcessId}-", coordinator.GradientSocketPath, StringComparison.Ordinal);
    }

    [Fact]
    public async Task With_the_gradient_socket_off_assignments_name_none_and_the_stream_still_works()
    {
        await using var coordinator = await TestCoordinator.StartAsync(gradientSocket: false);
        Assert.Null(coordinator.GradientPort);
        var (workers, assignments) = await StartTrialAsync(coordinator, 2);
        Assert.All(assignments, a => Assert.Equal("", a.GradientEndpoint));
        Assert.All(assignments, a => Assert.Equal("", a.GradientSocketPath));
        var ranks = await ConnectAsync(coordinator, assignments, Transport.Grpc);
        try
        {
            await AssertExactMeansAsync(ranks, 1000);
        }
        finally
        {
            await DisposeAllAsync(ranks);
            foreach (var w in workers) await w.DisposeAsync();
        }
    }

    [Theory]
    [InlineData(Transport.Grpc)]
    [InlineData(Transport.Socket)]
    [InlineData(Transport.SharedMemory)]
    public async Task A_rank_that_disconnects_mid_step_fails_the_others_at_once_naming_it(Transport transport)
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        var (workers, assignments) = await StartTrialAsync(coordinator, 3);
        // Ranks 0 and 1 use the real client; rank 2 is a raw connection that dies after one chunk.
        await using var dying = await RawRank.JoinAsync(coordinator, assignments[2], transport);
        var ranks = await ConnectAsync(coordinator, assignments.Take(2).ToList(), transport);
        try
        {
            await dying.WaitJoinedAsync(); // everyone joined
            var floats = 4 * ChunkFloats;
            var started = Stopwatch.StartNew();
            var calls = ranks.Select(r => r.AllReduceAsync(new float[floats], CancellationToken.None).AsTask()).ToArray();
            await dying.SendFirstChunkAsync(floats);
            await dying.DieAsync();

            foreach (var call in calls)
            {
                var e = await Assert.ThrowsAsync<CollectiveException>(() => call.DefaultTimeout());
                // The socket planes read the coordinator's failure frame and name the rank. On the gRPC
                // stream (the fallback plane) the call has been seen, rarely, to fail without the
                // trailers that name the rank; it must still fail promptly (a closed peer or a
                // timeout), never hang.
                if (transport == Transport.Grpc && e.PeerRank is null && e.Failure is CollectiveFailure.PeerClosed or CollectiveFailure.Timeout) continue;
                Assert.True(e.Failure == CollectiveFailure.PeerClosed && e.PeerRank == 2 && e.Message.Contains("rank 2", StringComparison.Ordinal), e.ToString());
            }
            // Noticed from the broken connection, well before the 10 s stall timeout.
            Assert.True(started.Elapsed < TimeSpan.FromSeconds(5), $"took {started.Elapsed}");
        }
        finally
        {
            await DisposeAllAsync(ranks);
            foreach (var w in workers) await w.DisposeAsync();
        }
    }

    [Theory]
    [InlineData(Transport.Grpc)]
    [InlineData(Transport.Socket)]
    [InlineData(Transport.SharedMemory)]
    public async Task A_rank_that_stalls_fails_every_rank_within_the_timeout(Transport transport)
    {
        await using var coordinator = await TestCoordinator.StartAsync(args: ["--GradientAggregation:StallTimeout=00:00:01"]);
        var (workers, assignments) = await StartTrialAsync(coordinator, 3);
        // Rank 2 joins and then sends nothing, as a hung process would.
        await using var silent = await RawRank.JoinAsync(coordinator, assignments[2], transport);
        var ranks = await ConnectAsync(coordinator, assignments.Take(2).ToList(), transport);
        try
        {
            var started = Stopwatch.StartNew();
            var calls = ranks.Select(r => r.AllReduceAsync(new float[3 * ChunkFloats], CancellationToken.None).AsTask()).ToArray();
            foreach (var call in calls)
            {
                var e = await Assert.ThrowsAsync<CollectiveException>(() => call.DefaultTimeout());
                Assert.Equal(CollectiveFailure.Timeout, e.Failure);
                Assert.Equal(2, e.PeerRank);
            }
            Assert.InRange(started.Elapsed, TimeSpan.FromSeconds(0.9), TimeSpan.FromSeconds(5));
            // The silent rank's connection ends too, ABORTED, naming itself.
            await silent.WaitJoinedAsync();
            var end = await silent.ReadEndAsync();
            Assert.Equal(StatusCode.Aborted, end.StatusCode);
            Assert.Equal("2", end.Trailers.GetValue(GradientExchange.FailedRankTrailer));
        }
        finally
        {
            await DisposeAllAsync(ranks);
            foreach (var w in workers) await w.DisposeAsync();
        }
    }

    [Theory]
    [InlineData(Transport.Grpc)]
    [InlineData(Transport.Socket)]
    [InlineData(Transport.SharedMemory)]
    public async Task A_stale_fencing_token_is_refused(Transport transport)
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        var (workers, assignments) = await StartTrialAsync(coordinator, 2);
        try
        {
            var options = Options(assignments[0]);
            options.FencingToken--;
            var e = await Assert.ThrowsAsync<CollectiveException>(() => Connect(coordinator, options, transport).DefaultTimeout());
            Assert.Equal(CollectiveFailure.ConnectFailed, e.Failure);
            Assert.Contains("FailedPrecondition", e.Message, StringComparison.Ordinal);
            Assert.Contains("fencing token", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            foreach (var w in workers) await w.DisposeAsync();
        }
    }

    [Theory]
    [InlineData(Transport.Grpc)]
    [InlineData(Transport.Socket)]
    [InlineData(Transport.SharedMemory)]
    public async Task Ranks_that_disagree_about_the_length_both_fail_with_a_mismatch(Transport transport)
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        var (workers, assignments) = await StartTrialAsync(coordinator, 2);
        var ranks = await ConnectAsync(coordinator, assignments, transport);
        try
        {
            var a = ranks[0].AllReduceAsync(new float[1000], CancellationToken.None).AsTask();
            var b = ranks[1].AllReduceAsync(new float[999], CancellationToken.None).AsTask();
            foreach (var call in new[] { a, b })
            {
                var e = await Assert.ThrowsAsync<CollectiveException>(() => call.DefaultTimeout());
                Assert.Equal(CollectiveFailure.Mismatch, e.Failure);
            }
        }
        finally
        {
            await DisposeAllAsync(ranks);
            foreach (var w in workers) await w.DisposeAsync();
        }
    }

    [Fact]
    public async Task The_gradient_socket_refuses_a_wrong_token_and_foreign_bytes_with_one_clear_status()
    {
        await using var coordinator = await TestCoordinator.StartAsync(o => o.AuthToken = "s3cret");
        var (workers, assignments) = await StartTrialAsync(coordinator, 2);
        try
        {
            var options = Options(assignments[0]);
            options.Headers = new Metadata { { "authorization", "Bearer wrong" } };
            var e = await Assert.ThrowsAsync<CollectiveException>(() => Connect(coordinator, options, Transport.Socket).DefaultTimeout());
            Assert.Equal(CollectiveFailure.ConnectFailed, e.Failure);
            Assert.Contains("Unauthenticated", e.Message, StringComparison.Ordinal);

            // Something that is not a rank (here, an HTTP request) is told what it reached.
            using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
            await socket.ConnectAsync("127.0.0.1", coordinator.GradientPort!.Value).DefaultTimeout();
            await socket.SendAsync("GET / HTTP/1.1\r\n\r\n"u8.ToArray(), SocketFlags.None).DefaultTimeout();
            var end = await RawRank.ReadFailureAsync(socket);
            Assert.Equal(StatusCode.InvalidArgument, end.StatusCode);
            Assert.Contains("gradient socket", end.Status.Detail, StringComparison.Ordinal);
        }
        finally
        {
            foreach (var w in workers) await w.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_coordinator_that_stops_ends_the_exchange_for_every_rank_promptly()
    {
        var coordinator = await TestCoordinator.StartAsync();
        var (workers, assignments) = await StartTrialAsync(coordinator, 2);
        var ranks = await ConnectAsync(coordinator, assignments, Transport.Socket);
        try
        {
            // Rank 0 is mid-step (waiting for rank 1) when the coordinator stops.
            var call = ranks[0].AllReduceAsync(new float[ChunkFloats], CancellationToken.None).AsTask();
            await Task.Delay(200);
            var started = Stopwatch.StartNew();
            foreach (var w in workers) await w.DisposeAsync();
            await coordinator.DisposeAsync();
            var e = await Assert.ThrowsAsync<CollectiveException>(() => call.DefaultTimeout());
            Assert.Equal(CollectiveFailure.PeerClosed, e.Failure);
            Assert.Contains("shutting down", e.Message, StringComparison.Ordinal);
            Assert.True(started.Elapsed < TimeSpan.FromSeconds(10), $"took {started.Elapsed}");
        }
        finally
        {
            await DisposeAllAsync(ranks);
        }
    }

    [Theory]
    [InlineData(":5001", "http://coord.example:5000", "coord.example", 5001)]
    [InlineData("10.0.0.7:6001", "http://coord:5000", "10.0.0.7", 6001)]
    [InlineData(":5001", "http://[::1]:5000", "::1", 5001)]
    [InlineData("[fe80::1]:7000", "http://coord:5000", "fe80::1", 7000)]
    public void Gradient_endpoints_resolve_against_the_coordinator_address(string advertised, string coordinator, string host, int port) =>
        Assert.Equal((host, port), CoordinatorSocketAllReduce.ResolveEndpoint(advertised, new Uri(coordinator)));

    [Theory]
    [InlineData("5001")]
    [InlineData(":0")]
    [InlineData("host:port")]
    [InlineData(":70000")]
    public void A_malformed_gradient_endpoint_is_refused(string advertised) =>
        Assert.Throws<FormatException>(() => CoordinatorSocketAllReduce.ResolveEndpoint(advertised, new Uri("http://coord:5000")));

    [Theory]
    [InlineData(Transport.Grpc)]
    [InlineData(Transport.Socket)]
    [InlineData(Transport.SharedMemory)]
    public async Task Two_ranks_averaging_through_the_coordinator_reach_the_same_weights_as_one_rank_with_twice_the_batch(Transport transport)
    {
        Worker.Native.TorchRuntime.Initialize();
        var dir = Directory.CreateTempSubdirectory("orch-coord-ddp-").FullName;
        var data = Worker.UnitTests.Support.TinyData.Splits(256, 64);
        static Trials.TrialSpec Spec(int batch) => new()
        {
            Data = new Trials.DataSpec { Name = "synthetic" },
            Model = new Trials.ModelSpec { Name = "simple-cnn", BatchNorm = false },
            Epochs = 2,
            BatchSize = batch,
            Seed = 11,
            Optimizer = new Trials.OptimizerSpec { Name = "sgd", Lr = 0.05, Momentum = 0.9 },
        };
        await using var coordinator = await TestCoordinator.StartAsync();
        var (workers, assignments) = await StartTrialAsync(coordinator, 2);
        var ranks = await ConnectAsync(coordinator, assignments, transport);
        try
        {
            using var single = new Worker.Training.TrainingSession(Spec(32), data, TorchSharp.torch.CPU, Path.Combine(dir, "single"));
            single.Run();
            // Built one after the other: each seeds libtorch's generator, so both start from the same weights.
            var sessions = Enumerable.Range(0, 2).Select(r => new Worker.Training.TrainingSession(Spec(16), data, TorchSharp.torch.CPU,
                Path.Combine(dir, $"rank{r}"), null, new Worker.Training.DistributedContext(r, 2, ranks[r]))).ToArray();
            try
            {
                var threads = sessions.Select(s => new Thread(() => s.Run()) { IsBackground = true }).ToArray();
                foreach (var t in threads) t.Start();
                foreach (var t in threads) Assert.True(t.Join(TimeSpan.FromMinutes(2)), "a rank did not finish");
                var expected = single.Model.state_dict();
                foreach (var session in sessions)
                foreach (var (name, tensor) in session.Model.state_dict())
                {
                    using var diff = (tensor - expected[name]).abs().max();
                    Assert.True(diff.ToSingle() < 2e-5f, $"{name} differs by {diff.ToSingle()}");
                }
            }
            finally
            {
                foreach (var s in sessions) s.Dispose();
            }
        }
        finally
        {
            await DisposeAllAsync(ranks);
            foreach (var w in workers) await w.DisposeAsync();
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>Submits a one-trial sweep in coordinator mode and returns its gang's assignments in rank order.</summary>
    private static async Task<(List<FakeWorker> Workers, List<AssignTrial> Assignments)> StartTrialAsync(TestCoordinator coordinator, int world)
    {
        var workers = new List<FakeWorker>();
        for (var i = 0; i < world; i++) workers.Add(await coordinator.ConnectWorkerAsync($"w{i}"));
        var yaml = Specs.Grid("grads", [0.1], workers: world).Replace(
            $"resources: {{ workers: {world} }}", $"resources: {{ workers: {world}, aggregation: coordinator }}", StringComparison.Ordinal);
        await coordinator.SubmitAsync(yaml);
        var assignments = new List<AssignTrial>();
        foreach (var w in workers) assignments.Add(await w.NextAssignmentAsync());
        return (workers, assignments.OrderBy(a => a.Rank).ToList());
    }

    private static CoordinatorAllReduceOptions Options(AssignTrial a) => new()
    {
        TrialId = a.Lease.TrialId,
        FencingToken = a.Lease.FencingToken,
        Rank = a.Rank,
        WorldSize = a.WorldSize,
        ChunkBytes = ChunkBytes,
        ConnectTimeout = TimeSpan.FromSeconds(20),
    };

    private static GradientStreamHeader Header(AssignTrial a, int chunkFloats) => new()
    {
        TrialId = a.Lease.TrialId,
        FencingToken = a.Lease.FencingToken,
        Rank = a.Rank,
        WorldSize = a.WorldSize,
        ChunkFloats = chunkFloats,
    };

    /// <summary>Connects every listed rank at once (joining waits for the whole gang), each on its own connection.</summary>
    private static async Task<IAllReduce[]> ConnectAsync(TestCoordinator coordinator, IReadOnlyList<AssignTrial> assignments, Transport transport) =>
        await Task.WhenAll(assignments.Select(a => Connect(coordinator, a, transport))).DefaultTimeout();

    private static Task<IAllReduce> Connect(TestCoordinator coordinator, AssignTrial assignment, Transport transport, WireFormat wire = WireFormat.Fp32)
    {
        var options = Options(assignment);
        options.Wire = wire;
        return Connect(coordinator, options, transport, assignment.GradientEndpoint);
    }

    private static async Task<IAllReduce> Connect(TestCoordinator coordinator, CoordinatorAllReduceOptions options, Transport transport, string? endpoint = null)
    {
        if (transport == Transport.Grpc) return await CoordinatorAllReduce.ConnectAsync(options, coordinator.Address, CancellationToken.None);
        if (transport is Transport.Unix or Transport.SharedMemory)
        {
            var rank = await CoordinatorSocketAllReduce.ConnectUnixAsync(options, coordinator.GradientSocketPath!, CancellationToken.None, sharedMemory: transport == Transport.SharedMemory);
            // Shared memory is granted for fp32 only (bf16 saves wire bytes, and there is no wire).
            Assert.Equal(transport == Transport.SharedMemory && options.Wire == WireFormat.Fp32, rank.SharedMemory);
            return rank;
        }
        var (host, port) = CoordinatorSocketAllReduce.ResolveEndpoint(endpoint ?? $":{coordinator.GradientPort}", coordinator.Address);
        return await CoordinatorSocketAllReduce.ConnectAsync(options, host, port, CancellationToken.None);
    }

    /// <summary>Three steps of different lengths (the length may change from call to call): every rank gets the contract's mean, bit for bit.</summary>
    private static async Task AssertExactMeansAsync(IAllReduce[] ranks, int floats)
    {
        // Shorter, then longer than the first: shared memory must grow its segment mid-trial.
        foreach (var length in new[] { floats, floats / 2 + 1, 2 * floats + 3 })
        {
            var buffers = Enumerable.Range(0, ranks.Length).Select(r => Values(r, length)).ToArray();
            var expected = Mean(buffers);
            await Task.WhenAll(ranks.Select((rank, r) => rank.AllReduceAsync(buffers[r], CancellationToken.None).AsTask())).DefaultTimeout();
            foreach (var buffer in buffers)
                Assert.Equal(Bits(expected), Bits(buffer));
        }
    }

    private static async Task DisposeAllAsync(IEnumerable<IAllReduce> ranks)
    {
        foreach (var r in ranks) await r.DisposeAsync().AsTask().DefaultTimeout();
    }

    /// <summary>Values with every kind of rounding: mixed signs and magnitudes, so order matters.</summary>
    private static float[] Values(int rank, int length)
    {
        var random = new Random(1000 + rank);
        return Enumerable.Range(0, length).Select(_ => (float)((random.NextDouble() - 0.5) * Math.Pow(10, random.Next(-6, 6)))).ToArray();
    }

    /// <summary>The mean as the contract defines it: summed in rank order, then divided once by W.</summary>
    private static float[] Mean(float[][] buffers)
    {
        var mean = new float[buffers[0].Length];
        for (var i = 0; i < mean.Length; i++)
        {
            var sum = buffers[0][i];
            for (var r = 1; r < buffers.Length; r++) sum += buffers[r][i];
            mean[i] = sum / buffers.Length;
        }
        return mean;
    }

    private static float[] RoundBf16(float[] values)
    {
        var rounded = (float[])values.Clone();
        Numerics.BFloat16Codec.RoundInPlace(rounded);
        return rounded;
    }

    private static int[] Bits(float[] values) => values.Select(BitConverter.SingleToInt32Bits).ToArray();

    /// <summary>
    /// A rank driven by hand on either data plane, to misbehave in ways the real clients never do:
    /// join and fall silent, or send one chunk and die.
    /// </summary>
    private sealed class RawRank : IAsyncDisposable
    {
        private readonly CancellationTokenSource _life = new();
        private AsyncDuplexStreamingCall<GradientChunk, GradientChunk>? _call;
        private Socket? _socket;

        public static async Task<RawRank> JoinAsync(TestCoordinator coordinator, AssignTrial assignment, Transport transport)
        {
            var rank = new RawRank();
            var header = Header(assignment, ChunkFloats);
            if (transport == Transport.Grpc)
            {
                rank._call = new GradientExchange.GradientExchangeClient(coordinator.Channel).AllReduce(cancellationToken: rank._life.Token);
                await rank._call.RequestStream.WriteAsync(new GradientChunk { Header = header }).DefaultTimeout();
            }
            else if (transport is Transport.Unix or Transport.SharedMemory)
            {
                // A misbehaving rank on the Unix socket (its frames are the socket's, without shared memory).
                rank._socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                await rank._socket.ConnectAsync(new UnixDomainSocketEndPoint(coordinator.GradientSocketPath!)).DefaultTimeout();
                await rank._socket.SendAsync(GradientSocketFrames.Hello(new GradientSocketHello { Header = header }), SocketFlags.None).DefaultTimeout();
            }
            else
            {
                rank._socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
                await rank._socket.ConnectAsync("127.0.0.1", coordinator.GradientPort!.Value).DefaultTimeout();
                await rank._socket.SendAsync(GradientSocketFrames.Hello(new GradientSocketHello { Header = header }), SocketFlags.None).DefaultTimeout();
            }
            return rank;
        }

        public async Task WaitJoinedAsync()
        {
            if (_call is not null)
            {
                Assert.True(await _call.ResponseStream.MoveNext(CancellationToken.None).DefaultTimeout());
                Assert.NotNull(_call.ResponseStream.Current.Header);
                return;
            }
            var frame = await ReceiveAsync(_socket!, GradientSocketFrames.FrameHeaderBytes);
            Assert.Equal(GradientSocketFrames.Joined, GradientSocketFrames.ReadFrame(frame).Type);
        }

        public async Task SendFirstChunkAsync(int stepFloats)
        {
            if (_call is not null)
            {
                await _call.RequestStream.WriteAsync(new GradientChunk { Step = 0, Index = 0, StepFloats = stepFloats, Data = ByteString.CopyFrom(new byte[ChunkBytes]) }).DefaultTimeout();
                return;
            }
            var bytes = new byte[GradientSocketFrames.StepHeaderBytes + ChunkBytes];
            GradientSocketFrames.WriteStep(bytes, 0, stepFloats);
            await _socket!.SendAsync(bytes, SocketFlags.None).DefaultTimeout();
        }

        /// <summary>Goes away abruptly: the stream is cancelled (RST_STREAM), the socket reset (RST).</summary>
        public async Task DieAsync()
        {
            if (_call is not null)
            {
                await _life.CancelAsync();
                return;
            }
            if (_socket!.ProtocolType == ProtocolType.Tcp) _socket.LingerState = new LingerOption(true, 0);
            _socket.Dispose();
        }

        /// <summary>The status the coordinator ended this rank's connection with.</summary>
        public async Task<RpcException> ReadEndAsync()
        {
            if (_call is not null)
                return await Assert.ThrowsAsync<RpcException>(() => _call.ResponseStream.MoveNext(CancellationToken.None).DefaultTimeout());
            return await ReadFailureAsync(_socket!);
        }

        public static async Task<RpcException> ReadFailureAsync(Socket socket)
        {
            var frame = await ReceiveAsync(socket, GradientSocketFrames.FrameHeaderBytes);
            var (type, length, _) = GradientSocketFrames.ReadFrame(frame);
            Assert.Equal(GradientSocketFrames.Failed, type);
            var payload = await ReceiveAsync(socket, (int)length);
            return GradientSocketFrames.ToRpcException(GradientSocketFailure.Parser.ParseFrom(payload));
        }

        private static async Task<byte[]> ReceiveAsync(Socket socket, int length)
        {
            var buffer = new byte[length];
            var read = 0;
            while (read < length)
            {
                var n = await socket.ReceiveAsync(buffer.AsMemory(read), SocketFlags.None).AsTask().DefaultTimeout();
                Assert.True(n > 0, "the coordinator closed the connection early");
                read += n;
            }
            return buffer;
        }

        public ValueTask DisposeAsync()
        {
            _call?.Dispose();
            _socket?.Dispose();
            _life.Cancel();
            _life.Dispose();
            return ValueTask.CompletedTask;
        }
    }
}

using System.Diagnostics;
using Google.Protobuf;
using Grpc.Core;
using Orchestrator.Protocol.V1;
using Orchestrator.TestSupport;
using Orchestrator.Worker.Distributed;
using TorchSharp;

namespace Orchestrator.Coordinator.FunctionalTests;

/// <summary>
/// The <c>coordinator</c> aggregation mode end to end: a real coordinator, a data-parallel trial
/// assigned to fake workers, and the worker's real client (<see cref="CoordinatorAllReduce"/>).
/// </summary>
public sealed class GradientExchangeTests
{
    private const int ChunkBytes = CoordinatorAllReduceOptions.MinChunkBytes;
    private const int ChunkFloats = ChunkBytes / sizeof(float);

    [Theory]
    [InlineData(2, 3 * ChunkFloats)]
    [InlineData(2, 3 * ChunkFloats + 1234)]
    [InlineData(3, 2 * ChunkFloats)]
    [InlineData(3, 2 * ChunkFloats + 77)]
    [InlineData(3, 100)]
    public async Task Ranks_get_the_exact_mean_with_identical_bits(int world, int floats)
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        var (workers, assignments) = await StartTrialAsync(coordinator, world);
        Assert.All(assignments, a => Assert.Equal("coordinator", a.Aggregation));
        var ranks = await ConnectAsync(coordinator, assignments);
        try
        {
            // Two steps of different lengths: the buffer length may change from call to call.
            foreach (var length in new[] { floats, floats / 2 + 1 })
            {
                var buffers = Enumerable.Range(0, world).Select(r => Values(r, length)).ToArray();
                var expected = Mean(buffers);
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
    public async Task A_rank_that_disconnects_mid_step_fails_the_others_at_once_naming_it()
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        var (workers, assignments) = await StartTrialAsync(coordinator, 3);
        // Ranks 0 and 1 use the real client; rank 2 is a raw stream that dies after one chunk.
        using var dying = new CancellationTokenSource();
        var raw = new GradientExchange.GradientExchangeClient(coordinator.Channel).AllReduce(cancellationToken: dying.Token);
        await raw.RequestStream.WriteAsync(new GradientChunk { Header = Header(assignments[2], ChunkFloats) }).DefaultTimeout();
        var ranks = await ConnectAsync(coordinator, assignments.Take(2).ToList());
        try
        {
            Assert.True(await raw.ResponseStream.MoveNext(CancellationToken.None).DefaultTimeout()); // everyone joined
            var floats = 4 * ChunkFloats;
            var started = Stopwatch.StartNew();
            var calls = ranks.Select(r => r.AllReduceAsync(new float[floats], CancellationToken.None).AsTask()).ToArray();
            await raw.RequestStream.WriteAsync(new GradientChunk { Step = 0, Index = 0, StepFloats = floats, Data = ByteString.CopyFrom(new byte[ChunkBytes]) }).DefaultTimeout();
            await dying.CancelAsync();

            foreach (var call in calls)
            {
                var e = await Assert.ThrowsAsync<CollectiveException>(() => call.DefaultTimeout());
                // Usually reported as the peer closing (naming it); under heavy load the client has
                // been seen to classify the same prompt failure as a timeout. Either way it must be fast.
                Assert.True(e.Failure is CollectiveFailure.PeerClosed or CollectiveFailure.Timeout, e.ToString());
                if (e.Failure == CollectiveFailure.PeerClosed)
                {
                    Assert.Equal(2, e.PeerRank);
                    Assert.Contains("rank 2", e.Message, StringComparison.Ordinal);
                }
            }
            // Noticed from the broken stream, well before the 10 s stall timeout.
            Assert.True(started.Elapsed < TimeSpan.FromSeconds(5), $"took {started.Elapsed}");
        }
        finally
        {
            raw.Dispose();
            await DisposeAllAsync(ranks);
            foreach (var w in workers) await w.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_rank_that_stalls_fails_every_rank_within_the_timeout()
    {
        await using var coordinator = await TestCoordinator.StartAsync(args: ["--GradientAggregation:StallTimeout=00:00:01"]);
        var (workers, assignments) = await StartTrialAsync(coordinator, 3);
        // Rank 2 joins and then sends nothing, as a hung process would.
        var silent = new GradientExchange.GradientExchangeClient(coordinator.Channel).AllReduce();
        await silent.RequestStream.WriteAsync(new GradientChunk { Header = Header(assignments[2], ChunkFloats) }).DefaultTimeout();
        var ranks = await ConnectAsync(coordinator, assignments.Take(2).ToList());
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
            // The silent rank's stream ends too, ABORTED, naming itself.
            Assert.True(await silent.ResponseStream.MoveNext(CancellationToken.None).DefaultTimeout());
            var end = await Assert.ThrowsAsync<RpcException>(() => silent.ResponseStream.MoveNext(CancellationToken.None).DefaultTimeout());
            Assert.Equal(StatusCode.Aborted, end.StatusCode);
            Assert.Equal("2", end.Trailers.GetValue(GradientExchange.FailedRankTrailer));
        }
        finally
        {
            silent.Dispose();
            await DisposeAllAsync(ranks);
            foreach (var w in workers) await w.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_stale_fencing_token_is_refused()
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        var (workers, assignments) = await StartTrialAsync(coordinator, 2);
        try
        {
            var options = Options(assignments[0]);
            options.FencingToken--;
            var e = await Assert.ThrowsAsync<CollectiveException>(() =>
                CoordinatorAllReduce.ConnectAsync(options, coordinator.Channel.CreateCallInvoker(), CancellationToken.None).DefaultTimeout());
            Assert.Equal(CollectiveFailure.ConnectFailed, e.Failure);
            Assert.Contains("FailedPrecondition", e.Message, StringComparison.Ordinal);
            Assert.Contains("fencing token", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            foreach (var w in workers) await w.DisposeAsync();
        }
    }

    [Fact]
    public async Task Ranks_that_disagree_about_the_length_both_fail_with_a_mismatch()
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        var (workers, assignments) = await StartTrialAsync(coordinator, 2);
        var ranks = await ConnectAsync(coordinator, assignments);
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

    /// <summary>Submits a one-trial sweep in coordinator mode and returns its gang's assignments in rank order.</summary>
    [Fact]
    public async Task Two_ranks_averaging_through_the_coordinator_reach_the_same_weights_as_one_rank_with_twice_the_batch()
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
        var ranks = await ConnectAsync(coordinator, assignments);
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

    /// <summary>Connects every listed rank at once (joining waits for the whole gang), each on its own channel.</summary>
    private static async Task<CoordinatorAllReduce[]> ConnectAsync(TestCoordinator coordinator, IReadOnlyList<AssignTrial> assignments) =>
        await Task.WhenAll(assignments.Select(a => CoordinatorAllReduce.ConnectAsync(Options(a), coordinator.Address, CancellationToken.None))).DefaultTimeout();

    private static async Task DisposeAllAsync(IEnumerable<CoordinatorAllReduce> ranks)
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

    private static int[] Bits(float[] values) => values.Select(BitConverter.SingleToInt32Bits).ToArray();
}

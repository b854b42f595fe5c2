using System.Net;
using System.Net.Sockets;
using Orchestrator.Trials;
using Orchestrator.Worker.Distributed;
using Orchestrator.Worker.Native;
using Orchestrator.Worker.Training;
using Orchestrator.Worker.UnitTests.Support;
using TorchSharp;

namespace Orchestrator.Worker.UnitTests.Training;

[Collection(SerialTorchCollection.Name)]
public sealed class DataParallelTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("orch-ddp-").FullName;

    public DataParallelTests() => TorchRuntime.Initialize();

    private static TrialSpec Spec(int batchSize) => new()
    {
        Data = new DataSpec { Name = "synthetic" },
        // No BatchNorm and no dropout: the model's output for an image does not depend on the rest of its batch.
        Model = new ModelSpec { Name = "simple-cnn", BatchNorm = false },
        Epochs = 2,
        BatchSize = batchSize,
        Seed = 11,
        Optimizer = new OptimizerSpec { Name = "sgd", Lr = 0.05, Momentum = 0.9, WeightDecay = 5e-4 },
        Schedule = new ScheduleSpec { Name = "cosine" },
    };

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    [Fact]
    public async Task Two_ranks_with_batch_b_reach_the_same_weights_as_one_rank_with_batch_2b()
    {
        var data = TinyData.Splits(256, 64);
        using var single = new TrainingSession(Spec(32), data, torch.CPU, Path.Combine(_dir, "single"));
        single.Run();

        var endpoints = new[] { RingEndpoint.Tcp("127.0.0.1", FreePort()), RingEndpoint.Tcp("127.0.0.1", FreePort()) };
        var rings = await Task.WhenAll(Enumerable.Range(0, 2).Select(r =>
            RingAllReduce.ConnectAsync(new RingAllReduceOptions { Rank = r, Endpoints = endpoints }, CancellationToken.None)));
        // Built one after the other: each seeds the (process-wide) generator, so both start from the same weights.
        var sessions = Enumerable.Range(0, 2).Select(r =>
            new TrainingSession(Spec(16), data, torch.CPU, Path.Combine(_dir, $"rank{r}"), null, new DistributedContext(r, 2, rings[r]))).ToArray();
        try
        {
            var results = new TrainingResult[2];
            var threads = Enumerable.Range(0, 2).Select(r => new Thread(() => results[r] = sessions[r].Run()) { IsBackground = true }).ToArray();
            foreach (var t in threads) t.Start();
            foreach (var t in threads) Assert.True(t.Join(TimeSpan.FromMinutes(2)), "a rank did not finish");

            Assert.Equal(single.Step, sessions[0].Step);
            var expected = single.Model.state_dict();
            foreach (var session in sessions)
            {
                foreach (var (name, tensor) in session.Model.state_dict())
                {
                    using var diff = (tensor - expected[name]).abs().max();
                    Assert.True(diff.ToSingle() < 2e-5f, $"rank {session.RunDir}: {name} differs by {diff.ToSingle()}");
                }
            }
            // Evaluation is sharded and combined: every rank reports the accuracy of the whole validation set.
            Assert.Equal(single.History[^1].ValAccuracy, results[0].Last.ValAccuracy, 6);
            Assert.Equal(results[0].Last.ValAccuracy, results[1].Last.ValAccuracy);
            Assert.True(results[0].Last.AggregationBytes > 1_000_000, "gradients were not exchanged");
            // Only rank 0 writes checkpoints.
            Assert.True(File.Exists(Path.Combine(_dir, "rank0", "last.ckpt")));
            Assert.False(File.Exists(Path.Combine(_dir, "rank1", "last.ckpt")));
        }
        finally
        {
            foreach (var s in sessions) s.Dispose();
            foreach (var r in rings) await r.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_drain_on_one_rank_stops_every_rank_after_the_same_epoch_without_hanging()
    {
        var spec = Spec(16);
        spec.Epochs = 4;
        var data = TinyData.Splits(128, 32);
        await using var group = await Distributed.RingGroup.CreateAsync(2, Distributed.Transport.Tcp);
        using var drain = new CancellationTokenSource();
        var sessions = Enumerable.Range(0, 2).Select(r =>
            new TrainingSession(spec, data, torch.CPU, Path.Combine(_dir, $"drain{r}"), r == 1 ? new DrainOnEpoch(2, drain) : null,
                new DistributedContext(r, 2, group.Ranks[r]))).ToArray();
        try
        {
            // Only rank 1's worker is shutting down; rank 0 is not asked to drain.
            var drained = new bool[2];
            var threads = Enumerable.Range(0, 2).Select(r => new Thread(() => drained[r] = sessions[r].RunUntilDrained(r == 1 ? drain.Token : CancellationToken.None))
                { IsBackground = true }).ToArray();
            foreach (var t in threads) t.Start();
            foreach (var t in threads) Assert.True(t.Join(TimeSpan.FromMinutes(2)), "a rank hung");

            Assert.Equal([true, true], drained);
            // Both finished epoch 2, the one under way when the drain came, and neither began epoch 3.
            Assert.Equal([2, 2], sessions.Select(s => s.EpochsCompleted));
            Assert.Equal(sessions[0].Step, sessions[1].Step);
            Assert.Equal(2, Orchestrator.Worker.Checkpoints.CheckpointFile.ReadHeader(Path.Combine(_dir, "drain0", "last.ckpt")).EpochsCompleted);
        }
        finally
        {
            foreach (var s in sessions) s.Dispose();
        }
    }

    /// <summary>Requests a drain when a given epoch starts.</summary>
    private sealed class DrainOnEpoch(int epoch, CancellationTokenSource drain) : ITrainingObserver
    {
        public void OnEpochStart(int e, int epochs, int batches)
        {
            if (e == epoch) drain.Cancel();
        }
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}

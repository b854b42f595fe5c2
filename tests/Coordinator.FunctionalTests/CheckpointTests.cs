using System.Security.Cryptography;
using Google.Protobuf;
using Grpc.Core;
using Orchestrator.Protocol.V1;
using Orchestrator.TestSupport;

namespace Orchestrator.Coordinator.FunctionalTests;

/// <summary>Checkpoint upload and download through the worker gateway, checked by token and SHA-256.</summary>
public sealed class CheckpointTests
{
    internal static async Task<UploadCheckpointResponse> UploadAsync(TestCoordinator coordinator, TrialLease lease, byte[] bytes, string sha256, MetricPoint? point = null)
    {
        using var call = coordinator.Gateway().UploadCheckpoint();
        try
        {
            await call.RequestStream.WriteAsync(new CheckpointUpload { Header = new CheckpointHeader { Lease = lease, Epoch = 1, Size = bytes.Length, Point = point } }).DefaultTimeout();
            for (var offset = 0; offset < bytes.Length; offset += 100_000)
                await call.RequestStream.WriteAsync(new CheckpointUpload { Data = ByteString.CopyFrom(bytes, offset, Math.Min(100_000, bytes.Length - offset)) }).DefaultTimeout();
            await call.RequestStream.WriteAsync(new CheckpointUpload { Trailer = new CheckpointTrailer { Sha256 = sha256 } }).DefaultTimeout();
            await call.RequestStream.CompleteAsync().DefaultTimeout();
        }
        catch (Exception e) when (e is RpcException or InvalidOperationException)
        {
            // The coordinator answered (refused) while chunks were still going out; a write then
            // fails with whatever the transport saw. The answer itself says why: read it below.
        }
        return await call.ResponseAsync.DefaultTimeout();
    }

    internal static string Sha(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    [Fact]
    public async Task A_checkpoint_uploaded_with_the_current_token_and_checksum_downloads_byte_for_byte()
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        await using var worker = await coordinator.ConnectWorkerAsync("w1");
        var sweep = await coordinator.SubmitAsync(Specs.Grid("ckpt", [0.05]));
        var assign = await worker.NextAssignmentAsync();
        var bytes = new byte[600_000]; // several upload and download chunks
        new Random(7).NextBytes(bytes);

        var response = await UploadAsync(coordinator, assign.Lease, bytes, Sha(bytes));

        Assert.Equal(bytes.Length, response.Size);
        using var download = coordinator.Gateway().DownloadTrialCheckpoint(new DownloadTrialCheckpointRequest { Lease = assign.Lease });
        var received = new MemoryStream();
        var last = "";
        await foreach (var chunk in download.ResponseStream.ReadAllAsync().WithCancellation(CancellationToken.None))
        {
            Assert.Equal(received.Length, chunk.Offset);
            chunk.Data.WriteTo(received);
            last = chunk.Sha256;
        }
        Assert.Equal(bytes, received.ToArray());
        Assert.Equal(Sha(bytes), last);
        Assert.True((await coordinator.TrialAsync(sweep.Id, assign.Lease.TrialId)).HasCheckpoint);
    }

    [Fact]
    public async Task A_checkpoint_stores_the_metric_point_of_its_epoch_when_the_report_was_lost_and_keeps_one_that_arrived()
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        await using var worker = await coordinator.ConnectWorkerAsync("w1");
        await coordinator.SubmitAsync(Specs.Grid("ckpt-metrics", [0.05]));
        var assign = await worker.NextAssignmentAsync();
        var bytes = new byte[10_000];
        new Random(9).NextBytes(bytes);
        // The epoch-1 report never reached the coordinator (its stream broke); the checkpoint of
        // epoch 1 carries the same point, so a trial resumed after epoch 1 has no gap.
        var point = new MetricPoint { TrialId = assign.Lease.TrialId, Step = 18, Epoch = 1, Time = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(DateTimeOffset.UtcNow) };
        point.Values.Add("val_accuracy", 0.75);
        await UploadAsync(coordinator, assign.Lease, bytes, Sha(bytes), point);

        var points = await coordinator.Store.GetMetricsAsync(assign.Lease.TrialId, CancellationToken.None).DefaultTimeout();
        var stored = Assert.Single(points);
        Assert.Equal((1, 18L, 0.75), (stored.Epoch, stored.Step, stored.Values["val_accuracy"]));

        // The report arriving late (re-sent after a reconnect), and the checkpoint uploaded again: still one point.
        await worker.SendAsync(new WorkerMessage { Metric = new MetricReport { Lease = assign.Lease, Point = point } });
        await worker.SyncAsync();
        await UploadAsync(coordinator, assign.Lease, bytes, Sha(bytes), point);
        Assert.Single(await coordinator.Store.GetMetricsAsync(assign.Lease.TrialId, CancellationToken.None).DefaultTimeout());
    }

    [Fact]
    public async Task A_checkpoint_with_a_wrong_checksum_is_refused_with_DATA_LOSS_and_leaves_no_file()
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        await using var worker = await coordinator.ConnectWorkerAsync("w1");
        var sweep = await coordinator.SubmitAsync(Specs.Grid("ckpt-bad", [0.05]));
        var assign = await worker.NextAssignmentAsync();
        var bytes = new byte[50_000];
        new Random(8).NextBytes(bytes);

        var e = await Assert.ThrowsAsync<RpcException>(() => UploadAsync(coordinator, assign.Lease, bytes, Sha([1, 2, 3])));

        Assert.Equal(StatusCode.DataLoss, e.StatusCode);
        var trialDir = Path.Combine(coordinator.StateDir, "checkpoints", sweep.Id, assign.Lease.TrialId);
        Assert.Empty(Directory.Exists(trialDir) ? Directory.GetFiles(trialDir) : []);
        Assert.False((await coordinator.TrialAsync(sweep.Id, assign.Lease.TrialId)).HasCheckpoint);
        var download = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            using var call = coordinator.Gateway().DownloadTrialCheckpoint(new DownloadTrialCheckpointRequest { Lease = assign.Lease });
            await call.ResponseStream.MoveNext(CancellationToken.None).DefaultTimeout();
        });
        Assert.Equal(StatusCode.NotFound, download.StatusCode);
    }

    [Fact]
    public async Task A_full_checkpoint_volume_refuses_the_upload_with_RESOURCE_EXHAUSTED_and_keeps_serving_the_last_good_checkpoint()
    {
        // A 1 MiB tmpfs under the checkpoint store (the tests run as root, as .ci/run does).
        var stateDir = Path.Combine(Path.GetTempPath(), "orch-ftest-" + Guid.NewGuid().ToString("N"));
        var root = Directory.CreateDirectory(Path.Combine(stateDir, "checkpoints")).FullName;
        var mount = await RunAsync("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", root);
        Assert.True(mount.ExitCode == 0, "this test mounts a 1 MiB tmpfs and needs root: " + mount.Output);
        try
        {
            await using var coordinator = await TestCoordinator.StartAsync(stateDir: stateDir);
            await using var worker = await coordinator.ConnectWorkerAsync("w1");
            var sweep = await coordinator.SubmitAsync(Specs.Grid("ckpt-full", [0.05]));
            var assign = await worker.NextAssignmentAsync();
            var first = new byte[600_000];
            new Random(3).NextBytes(first);
            await UploadAsync(coordinator, assign.Lease, first, Sha(first));

            // The next one fits only once the first is replaced: its temporary file fills the volume.
            var second = new byte[600_000];
            new Random(4).NextBytes(second);
            var e = await Assert.ThrowsAsync<RpcException>(() => UploadAsync(coordinator, assign.Lease, second, Sha(second)));
            Assert.Equal(StatusCode.ResourceExhausted, e.StatusCode);
            Assert.Contains("checkpoint store is full", e.Status.Detail, StringComparison.Ordinal);

            // Only the good checkpoint is there (no temporary file left holding the space), and it is what a resume gets.
            var trialDir = Path.Combine(root, sweep.Id, assign.Lease.TrialId);
            Assert.Equal(["latest.ckpt"], Directory.GetFiles(trialDir).Select(Path.GetFileName));
            using var download = coordinator.Gateway().DownloadTrialCheckpoint(new DownloadTrialCheckpointRequest { Lease = assign.Lease });
            var received = new MemoryStream();
            while (await download.ResponseStream.MoveNext(CancellationToken.None).DefaultTimeout())
                download.ResponseStream.Current.Data.WriteTo(received);
            Assert.Equal(first, received.ToArray());
        }
        finally
        {
            await RunAsync("umount", root);
            Directory.Delete(stateDir, recursive: true);
        }
    }

    private static async Task<(int ExitCode, string Output)> RunAsync(string file, params string[] args)
    {
        var start = new System.Diagnostics.ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) start.ArgumentList.Add(a);
        using var process = System.Diagnostics.Process.Start(start)!;
        var output = await process.StandardError.ReadToEndAsync().DefaultTimeout() + await process.StandardOutput.ReadToEndAsync().DefaultTimeout();
        await process.WaitForExitAsync().DefaultTimeout();
        return (process.ExitCode, output);
    }

    [Fact]
    public async Task A_checkpoint_upload_or_download_with_a_stale_token_is_refused_with_FAILED_PRECONDITION()
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        await using var worker = await coordinator.ConnectWorkerAsync("w1");
        var sweep = await coordinator.SubmitAsync(Specs.Grid("ckpt-stale", [0.05]));
        var first = await worker.NextAssignmentAsync();
        await worker.StatusAsync(first.Lease, TrialStatus.Types.Outcome.Failed, "transient");
        var next = await worker.NextAsync();
        while (next.KindCase != CoordinatorMessage.KindOneofCase.Assign) next = await worker.NextAsync();
        Assert.True(next.Assign.Lease.FencingToken > first.Lease.FencingToken);
        var bytes = new byte[1000];

        var upload = await Assert.ThrowsAsync<RpcException>(() => UploadAsync(coordinator, first.Lease, bytes, Sha(bytes)));
        var download = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            using var call = coordinator.Gateway().DownloadTrialCheckpoint(new DownloadTrialCheckpointRequest { Lease = first.Lease });
            await call.ResponseStream.MoveNext(CancellationToken.None).DefaultTimeout();
        });

        Assert.Equal(StatusCode.FailedPrecondition, upload.StatusCode);
        Assert.Equal(StatusCode.FailedPrecondition, download.StatusCode);
        var trialDir = Path.Combine(coordinator.StateDir, "checkpoints", sweep.Id, first.Lease.TrialId);
        Assert.Empty(Directory.Exists(trialDir) ? Directory.GetFiles(trialDir) : []);
    }
}

using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Orchestrator.Data;
using Orchestrator.Protocol.V1;
using Orchestrator.TestSupport;
using Orchestrator.Trials;
using Orchestrator.Worker.Distributed;
using Orchestrator.Worker.Host;

namespace Orchestrator.Worker.UnitTests.Host;

/// <summary>The trial runner against a stand-in worker: all it needs is <see cref="ITrialHost"/>.</summary>
public sealed class TrialRunnerTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("orch-runner-");

    public void Dispose() => _dir.Delete(recursive: true);

    private sealed class FakeHost(WorkerAgentOptions options) : ITrialHost
    {
        public List<WorkerMessage> Sent { get; } = [];
        public TaskCompletionSource<string> Ended { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public TaskCompletionSource FetchStarted { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public WorkerAgentOptions Options { get; } = options;
        public ILogger Logger => NullLogger.Instance;

        public void Send(WorkerMessage message)
        {
            lock (Sent) Sent.Add(message);
        }

        public async Task<FetchResult> FetchDataAsync(DataSpec data, CancellationToken ct)
        {
            FetchStarted.TrySetResult();
            await Task.Delay(Timeout.Infinite, ct); // a large data set, still coming
            throw new InvalidOperationException("unreachable");
        }

        /// <summary>Called as each upload starts (with the runner's token); an upload then takes a moment, cancellable.</summary>
        public Action<CheckpointHeader>? OnUpload { get; set; }
        public List<(int Epoch, bool Best)> Uploaded { get; } = [];

        public async Task UploadCheckpointAsync(CheckpointHeader header, string path, CancellationToken ct)
        {
            OnUpload?.Invoke(header);
            await Task.Delay(300, ct);
            lock (Uploaded) Uploaded.Add((header.Epoch, header.Best));
        }
        /// <summary>Writes the checkpoint a resumed trial downloads; none by default.</summary>
        public Action<string>? OnDownload { get; set; }

        public Task DownloadCheckpointAsync(TrialLease lease, string path, CancellationToken ct)
        {
            if (OnDownload is null) throw new InvalidOperationException("no resume here");
            OnDownload(path);
            return Task.CompletedTask;
        }
        public Task<IAllReduce> JoinGradientExchangeAsync(GradientTransportRequest request, CancellationToken ct) => throw new InvalidOperationException("one rank");
        void ITrialHost.Ended(TrialRunner runner, string summary) => Ended.TrySetResult(summary);

        Task<string> ITrialHost.FetchPluginAsync(string reference, CancellationToken ct) => Task.FromResult(reference);
    }

    private FakeHost Host(bool fetchData = false) =>
        new(new WorkerAgentOptions { CoordinatorUrl = "http://127.0.0.1:1", WorkDir = _dir.FullName, FetchData = fetchData });

    private static AssignTrial Assignment(string yaml) => new()
    {
        Lease = new TrialLease { TrialId = "sw-1-t0001", FencingToken = 7 },
        TrialYaml = yaml,
        WorldSize = 1,
        Attempt = 1,
    };

    [Fact]
    public async Task An_invalid_trial_fails_permanently_and_is_reported_through_the_host()
    {
        var host = Host();
        var runner = new TrialRunner(host, Assignment("data: { name: fashion-mnist }\nmodel: { name: vgg16 }\n"));
        runner.Start();
        var summary = await host.Ended.Task.DefaultTimeout();
        var status = Assert.Single(host.Sent, m => m.KindCase == WorkerMessage.KindOneofCase.Status).Status;
        Assert.Equal(TrialStatus.Types.Outcome.FailedPermanently, status.Outcome);
        Assert.Contains("vgg16", status.Message);
        Assert.Equal(7, status.Lease.FencingToken);
        Assert.StartsWith("trial sw-1-t0001 failedpermanently: ", summary);
    }

    private static string Training(int epochs) => TrialSpecYaml.Serialize(new TrialSpec
    {
        Data = new DataSpec { Name = "synthetic", LimitTrain = 256, LimitTest = 64 },
        Model = new ModelSpec { Name = "simple-cnn" },
        Epochs = epochs,
        BatchSize = 32,
        Seed = 3,
    });

    private static IEnumerable<int> ReportedEpochs(FakeHost host)
    {
        lock (host.Sent) return [.. host.Sent.Where(m => m.Metric is not null).Select(m => m.Metric.Point.Epoch)];
    }

    [Fact]
    public async Task A_trial_stopped_early_after_its_report_finishes_uploading_that_epochs_checkpoints_then_trains_no_further()
    {
        Orchestrator.Worker.Native.TorchRuntime.Initialize();
        var host = Host();
        var runner = new TrialRunner(host, Assignment(Training(epochs: 4)));
        // The stop answers epoch 1's report and arrives while its checkpoints upload.
        host.OnUpload = h =>
        {
            if (h.Epoch == 1) runner.Stop("stopped early by asha after epoch 1", afterCheckpoint: true);
        };
        runner.Start();
        await host.Ended.Task.WaitAsync(TimeSpan.FromMinutes(2));
        Assert.Equal([(1, true), (1, false)], host.Uploaded);
        Assert.Equal([1], ReportedEpochs(host));
        var status = host.Sent.Last().Status;
        Assert.Equal((TrialStatus.Types.Outcome.Stopped, "stopped early by asha after epoch 1"), (status.Outcome, status.Message));
    }

    [Fact]
    public async Task A_stored_checkpoint_wrong_inside_fails_the_resumed_trial_permanently_naming_it()
    {
        Orchestrator.Worker.Native.TorchRuntime.Initialize();
        var host = Host();
        // A valid checksum over a header that is not JSON: every attempt would download the same file.
        host.OnDownload = path => CraftedCheckpoint.Write(path, "not json"u8.ToArray(), CraftedCheckpoint.PlaceholderSections());
        var assignment = Assignment(Training(epochs: 2));
        assignment.Resume = true;
        var runner = new TrialRunner(host, assignment);
        runner.Start();
        await host.Ended.Task.WaitAsync(TimeSpan.FromMinutes(2));
        var status = host.Sent.Last().Status;
        Assert.Equal(TrialStatus.Types.Outcome.FailedPermanently, status.Outcome);
        Assert.StartsWith("the stored checkpoint of sw-1-t0001: header is not valid JSON", status.Message);
        Assert.DoesNotContain("resume.ckpt", status.Message);
    }

    [Fact]
    public async Task A_plain_stop_during_an_upload_cuts_it_short()
    {
        Orchestrator.Worker.Native.TorchRuntime.Initialize();
        var host = Host();
        var runner = new TrialRunner(host, Assignment(Training(epochs: 4)));
        host.OnUpload = h => runner.Stop("the lease is no longer yours");
        runner.Start();
        await host.Ended.Task.WaitAsync(TimeSpan.FromMinutes(2));
        Assert.Empty(host.Uploaded);
        Assert.Equal([1], ReportedEpochs(host));
        Assert.Equal(TrialStatus.Types.Outcome.Stopped, host.Sent.Last().Status.Outcome);
    }

    [Fact]
    public async Task The_trial_log_says_which_attempt_ran_and_the_error_that_ended_it_before_the_outcome()
    {
        var host = Host();
        var runner = new TrialRunner(host, Assignment("data: { name: fashion-mnist }\nmodel: { name: vgg16 }\n"));
        runner.Start();
        await host.Ended.Task.DefaultTimeout();
        var kinds = host.Sent.Select(m => m.KindCase).ToList();
        // The log's lines go out before the outcome, so a reader following the log sees the error.
        Assert.Equal([WorkerMessage.KindOneofCase.Log, WorkerMessage.KindOneofCase.Log, WorkerMessage.KindOneofCase.Status], kinds);
        var lines = host.Sent.Where(m => m.KindCase == WorkerMessage.KindOneofCase.Log).Select(m => m.Log).ToList();
        Assert.All(lines, l => Assert.Equal(("sw-1-t0001", 7L), (l.Lease.TrialId, l.Lease.FencingToken)));
        Assert.StartsWith("attempt 1 on worker ", Assert.Single(lines[0].Lines).Text);
        var error = Assert.Single(lines[1].Lines).Text;
        Assert.StartsWith("error (no retry): ", error);
        Assert.Contains("vgg16", error);
    }

    [Fact]
    public async Task A_drain_while_the_data_set_is_still_being_fetched_hands_the_trial_back_at_once()
    {
        var host = Host(fetchData: true);
        var runner = new TrialRunner(host, Assignment("data: { name: fashion-mnist }\nmodel: { name: simple-cnn }\n"));
        runner.Start();
        await host.FetchStarted.Task.DefaultTimeout();
        Assert.Equal("trial sw-1-t0001 (not training yet)", runner.DrainTarget);
        runner.Drain();
        await host.Ended.Task.DefaultTimeout();
        var status = Assert.Single(host.Sent, m => m.KindCase == WorkerMessage.KindOneofCase.Status).Status;
        Assert.Equal(TrialStatus.Types.Outcome.Drained, status.Outcome);
        Assert.Equal("stopped before training started, the worker is shutting down", status.Message);
    }
}

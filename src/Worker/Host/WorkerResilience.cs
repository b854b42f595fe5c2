using Grpc.Core;
using Microsoft.Extensions.Logging;
using Polly;
using Polly.Retry;

namespace Orchestrator.Worker.Host;

/// <summary>
/// How a worker rides out a coordinator it cannot reach, or one whose state store is down (it
/// answers UNAVAILABLE): the retry pipelines, defined here and nowhere else. Trials keep
/// training meanwhile; reports wait in the worker's outbox and are re-sent on reconnect.
/// </summary>
internal static partial class WorkerResilience
{
    /// <summary>The first wait after a failure; waits double, with jitter, up to the worker's MaxBackoff.</summary>
    public static readonly TimeSpan FirstDelay = TimeSpan.FromMilliseconds(200);

    /// <summary>The size a checkpoint transfer of unknown size is allowed for (ResNet-50 with its optimizer state is about 300 MB).</summary>
    public const long LargeCheckpointBytes = 1L << 30;

    /// <summary>
    /// The deadline of one checkpoint transfer attempt of <paramref name="bytes"/>: the coordinator
    /// may hold a transfer for up to two minutes while its state store does not answer, and the
    /// bytes get a slow link's time (4 MB/s). A transfer that takes longer is cut and retried.
    /// </summary>
    public static TimeSpan CheckpointTransferDeadline(long bytes) =>
        TimeSpan.FromMinutes(3) + TimeSpan.FromSeconds(Math.Max(0, bytes) / (4.0 * 1024 * 1024));

    /// <summary>The Connect stream: reconnects for as long as the worker runs.</summary>
    public static ResiliencePipeline Reconnect(WorkerAgentOptions options, ILogger logger) => Forever(
        new PredicateBuilder()
            // A token the coordinator refuses stays refused: the worker stops and says so.
            .Handle<RpcException>(e => e.StatusCode is not (StatusCode.Cancelled or StatusCode.Unauthenticated or StatusCode.PermissionDenied))
            .Handle<IOException>()
            .Handle<HttpRequestException>(),
        options.MaxBackoff,
        a => Log.Reconnecting(logger, options.CoordinatorUrl, a.Outcome.Exception?.Message ?? "", a.RetryDelay.TotalSeconds));

    /// <summary>
    /// A checkpoint upload: retried until stored, since the next epoch starts only once the
    /// checkpoint is safe. A refusal (FAILED_PRECONDITION: the trial is no longer this worker's) is final.
    /// </summary>
    public static ResiliencePipeline CheckpointUpload(WorkerAgentOptions options, ILogger logger, Func<string> trialId) => Forever(
        new PredicateBuilder()
            .Handle<RpcException>(e => e.StatusCode != StatusCode.FailedPrecondition)
            // The connection dropped under a write of the request stream (a coordinator killed
            // mid-upload); the restarted one takes the whole checkpoint again.
            .Handle<IOException>(),
        options.MaxBackoff,
        a => Log.UploadRetry(logger, trialId(), a.AttemptNumber + 1, a.Outcome.Exception is RpcException r ? r.Status.Detail : a.Outcome.Exception?.Message ?? ""));

    /// <summary>
    /// The download a resuming trial starts from: retried while the coordinator is unreachable or
    /// its store does not answer (a restart), so that the attempt is not lost to it. An answer
    /// about the checkpoint itself (not the trial's any more, none stored, corrupt) is final.
    /// </summary>
    public static ResiliencePipeline CheckpointDownload(WorkerAgentOptions options, ILogger logger, Func<string> trialId) => Forever(
        new PredicateBuilder()
            .Handle<RpcException>(e => e.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded or StatusCode.Internal or StatusCode.Unknown
                or StatusCode.ResourceExhausted or StatusCode.Aborted)
            .Handle<IOException>()
            .Handle<HttpRequestException>(),
        options.MaxBackoff,
        a => Log.DownloadRetry(logger, trialId(), a.AttemptNumber + 1, a.Outcome.Exception is RpcException r ? r.Status.Detail : a.Outcome.Exception?.Message ?? ""));

    private static ResiliencePipeline Forever(PredicateBuilder<object> handle, TimeSpan maxDelay, Action<OnRetryArguments<object>> onRetry) =>
        new ResiliencePipelineBuilder().AddRetry(new RetryStrategyOptions
        {
            ShouldHandle = handle,
            BackoffType = DelayBackoffType.Exponential,
            UseJitter = true,
            Delay = FirstDelay,
            MaxDelay = maxDelay,
            MaxRetryAttempts = int.MaxValue,
            OnRetry = a =>
            {
                onRetry(a);
                return ValueTask.CompletedTask;
            },
        }).Build();

    private static partial class Log
    {
        [LoggerMessage(101, LogLevel.Warning, "Coordinator {Url} unreachable ({Reason}); retrying in {Seconds:F1}s")]
        public static partial void Reconnecting(ILogger logger, string url, string reason, double seconds);

        [LoggerMessage(112, LogLevel.Warning, "Trial {TrialId}: checkpoint upload attempt {Attempt} failed ({Reason}); retrying")]
        public static partial void UploadRetry(ILogger logger, string trialId, int attempt, string reason);

        [LoggerMessage(114, LogLevel.Warning, "Trial {TrialId}: checkpoint download attempt {Attempt} failed ({Reason}); retrying")]
        public static partial void DownloadRetry(ILogger logger, string trialId, int attempt, string reason);
    }
}

using Polly;
using Polly.Retry;
using Polly.Timeout;

namespace Orchestrator.Coordinator.State;

/// <summary>
/// How the coordinator rides out a state store that does not answer (Redis restarting, a network
/// blip): the retry pipelines, defined here and nowhere else. Only work that is safe to repeat is
/// retried: recovery at start-up, and a worker's stream messages (metric reports are idempotent by
/// step, outcomes and lease renewals by fencing token; a worker re-sends them after a reconnect
/// anyway). A user's call is not: it fails at once with UNAVAILABLE and says why.
/// </summary>
public sealed partial class StoreResilience
{
    /// <summary>The first wait after a failure; waits double (with jitter) up to <see cref="MaxDelay"/>.</summary>
    public static readonly TimeSpan FirstDelay = TimeSpan.FromMilliseconds(200);

    /// <summary>The longest wait between two tries: a store that returns is used again within this.</summary>
    public static readonly TimeSpan MaxDelay = TimeSpan.FromSeconds(2);

    /// <summary>
    /// How long one worker message is retried before its stream ends with UNAVAILABLE (the worker
    /// then reconnects and re-sends). Meanwhile the stream stays open: the worker keeps training and
    /// its reports wait, in order, in its outbox.
    /// </summary>
    public static readonly TimeSpan WorkerMessageTolerance = TimeSpan.FromMinutes(2);

    public StoreResilience(TimeProvider clock, ILogger<StoreResilience> logger)
    {
        Recovery = Build(clock, logger, "recovery", tolerance: null);
        WorkerMessages = Build(clock, logger, "worker message", WorkerMessageTolerance);
    }

    /// <summary>Loading sweeps after a start: retried until the store answers (or the host stops).</summary>
    public ResiliencePipeline Recovery { get; }

    /// <summary>Handling one message of a worker's stream: retried for up to <see cref="WorkerMessageTolerance"/>.</summary>
    public ResiliencePipeline WorkerMessages { get; }

    /// <summary>Whether <paramref name="e"/> says the store did not answer (and trying again may help).</summary>
    public static bool IsUnavailable(Exception e) => e is StateStoreUnavailableException or TimeoutException;

    /// <summary>
    /// Runs <paramref name="action"/> through <paramref name="pipeline"/>; when the pipeline's time is
    /// up, the store is reported unavailable (UNAVAILABLE to a gRPC caller), not a Polly timeout.
    /// </summary>
    public static async Task ExecuteAsync(ResiliencePipeline pipeline, Func<CancellationToken, Task> action, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(pipeline);
        try
        {
            await pipeline.ExecuteAsync(static async (a, token) => await a(token).ConfigureAwait(false), action, ct).ConfigureAwait(false);
        }
        catch (TimeoutRejectedException e)
        {
            throw new StateStoreUnavailableException($"the state store did not answer for {e.Timeout.TotalSeconds:0} s", e);
        }
    }

    private static ResiliencePipeline Build(TimeProvider clock, ILogger logger, string what, TimeSpan? tolerance)
    {
        var builder = new ResiliencePipelineBuilder { TimeProvider = clock };
        // Outermost: the total time the work may take, retries included.
        if (tolerance is { } total) builder.AddTimeout(total);
        return builder.AddRetry(new RetryStrategyOptions
        {
            ShouldHandle = new PredicateBuilder().Handle<Exception>(IsUnavailable),
            BackoffType = DelayBackoffType.Exponential,
            UseJitter = true,
            Delay = FirstDelay,
            MaxDelay = MaxDelay,
            MaxRetryAttempts = int.MaxValue,
            OnRetry = a =>
            {
                Log.Retrying(logger, what, a.AttemptNumber + 1, a.RetryDelay.TotalSeconds, a.Outcome.Exception?.Message ?? "");
                return ValueTask.CompletedTask;
            },
        }).Build();
    }

    private static partial class Log
    {
        [LoggerMessage(LogEventIds.State + 1, LogLevel.Warning, "State store unavailable ({What}, try {Attempt}), retrying in {Seconds:F1}s: {Message}")]
        public static partial void Retrying(ILogger logger, string what, int attempt, double seconds, string message);
    }
}

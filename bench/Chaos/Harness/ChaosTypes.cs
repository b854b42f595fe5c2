namespace Orchestrator.Bench.Chaos;

/// <summary>What a chaos run SIGKILLs.</summary>
public enum FaultKind
{
    /// <summary>One of the worker processes, chosen at random each time.</summary>
    Worker,
    /// <summary>The coordinator process.</summary>
    Coordinator,
    /// <summary>The redis-server process.</summary>
    Redis,
    /// <summary>Any of the three, chosen at random each time.</summary>
    Mixed,
}

/// <summary>The properties checked after every run.</summary>
public enum Invariant
{
    /// <summary>Every sweep completed, every trial completed, none twice, none lost.</summary>
    CompletedOnce,
    /// <summary>Each trial's metric points: epochs 1..E once each, steps increasing, none repeated.</summary>
    ContiguousSteps,
    /// <summary>Progress (a new epoch or a completed trial) seen at least every <see cref="ChaosOptions.StallLimit"/>.</summary>
    NoStall,
    /// <summary>The best checkpoint of each sweep downloads, loads and evaluates to the sweep's best metric.</summary>
    BestCheckpoint,
}

/// <summary>The shape of one chaos run.</summary>
public sealed record ChaosOptions
{
    /// <summary>What to kill.</summary>
    public required FaultKind Kind { get; init; }

    /// <summary>Seeds every choice of the run: targets, moments, downtimes. Printed, so a run can be replayed.</summary>
    public required int Seed { get; init; }

    /// <summary>Worker processes (each one slot; the data-parallel trial takes two).</summary>
    public int Workers { get; init; } = 3;

    /// <summary>
    /// Most kills in a run (fewer when the sweeps finish first). The coordinator allows one more
    /// assignment per trial than this, so kills alone cannot use up a trial's attempts.
    /// </summary>
    public int MaxKills { get; init; } = 3;

    /// <summary>A target lives this long (uniformly drawn between the two) before the next kill.</summary>
    public TimeSpan MinUptime { get; init; } = TimeSpan.FromSeconds(2);

    /// <inheritdoc cref="MinUptime"/>
    public TimeSpan MaxUptime { get; init; } = TimeSpan.FromSeconds(6);

    /// <summary>
    /// The coordinator's lease timeout in seconds. Short leases (3 s) make worker kills cost little
    /// time; with them a restarted coordinator's grace (one lease timeout) is shorter than a
    /// worker's reconnect backoff (up to 5 s), so coordinator kills re-queue trials. The default
    /// lease (10 s) covers the backoff.
    /// </summary>
    public int LeaseSeconds { get; init; } = 3;

    /// <summary>Longest allowed time without progress.</summary>
    public TimeSpan StallLimit { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>A run that has not finished by then is stopped and counted as stalled.</summary>
    public TimeSpan RunTimeout { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>Keep the run's folder and every process's output (<c>logs/</c>) even when the run passed.</summary>
    public bool KeepLogs { get; init; }

    /// <summary>Epochs per trial.</summary>
    public int Epochs { get; init; } = 2;

    /// <summary>Training images per trial (a Fashion-MNIST subset).</summary>
    public int LimitTrain { get; init; } = 500;

    /// <summary>Validation images per trial.</summary>
    public int LimitTest { get; init; } = 200;
}

/// <summary>A broken invariant, with what was seen.</summary>
public sealed record Violation(Invariant Invariant, string Detail);

/// <summary>What one chaos run did and found.</summary>
public sealed record ChaosResult(
    ChaosOptions Options,
    int Kills,
    TimeSpan Duration,
    TimeSpan LongestStall,
    int ExtraAttempts,
    IReadOnlyList<Violation> Violations,
    string? LogFolder)
{
    /// <summary>No invariant broken.</summary>
    public bool Passed => Violations.Count == 0;

    /// <summary>The run in one line: kind, seed, verdict, kills, time, longest stall, re-assignments.</summary>
    public string Line =>
        FormattableString.Invariant($"{Options.Kind.ToString().ToLowerInvariant(),-11} seed {Options.Seed,-6} {(Passed ? "ok  " : "FAIL")} kills {Kills}  {Duration.TotalSeconds,5:F1} s  longest stall {LongestStall.TotalSeconds,4:F1} s  extra attempts {ExtraAttempts}")
        + (Passed ? "" : "  " + string.Join("; ", Violations.Select(v => $"{v.Invariant}: {v.Detail}")))
        + (LogFolder is null ? "" : $"  (logs: {LogFolder})");
}

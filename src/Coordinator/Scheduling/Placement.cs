namespace Orchestrator.Coordinator.Scheduling;

/// <summary>
/// What one trial asks of the fleet: <see cref="Ranks"/> data-parallel ranks, each needing
/// <see cref="GpusPerRank"/> GPUs on one worker (0: any slot, CPU workers first). A re-queued
/// trial may shrink to <see cref="MinRanks"/> when fewer fit (<see cref="MayShrink"/>).
/// </summary>
public readonly record struct GangRequest(int Ranks, int GpusPerRank, int MinRanks = 0, bool MayShrink = false);

/// <summary>Where one rank runs: a worker and the GPUs (indexes on that worker) it holds; none for a CPU slot.</summary>
public sealed record RankSlot(string WorkerId, IReadOnlyList<int> Gpus);

/// <summary>Why a pending trial waits. <see cref="Kind"/> is the metric label; <see cref="Text"/> is for people.</summary>
public sealed record PendingReason(PendingReasonKind Kind, string Text);

/// <summary>The few reasons a pending trial waits (a fixed set: the label of orch_trials_pending).</summary>
public enum PendingReasonKind
{
    /// <summary>Its sweep already runs search.parallelTrials trials.</summary>
    ParallelLimit,
    /// <summary>Workers that could run it exist, but not enough of them are free now.</summary>
    WaitingForWorkers,
    /// <summary>No connected worker could ever run a rank of it (none connected, or none with enough GPUs).</summary>
    NoMatchingWorker,
    /// <summary>Its sweep is paused (orch pause).</summary>
    SweepPaused,
}

/// <summary>Names of <see cref="PendingReasonKind"/> as metric labels.</summary>
public static class PendingReasonLabels
{
    public static string Of(PendingReasonKind kind) => kind switch
    {
        PendingReasonKind.ParallelLimit => "parallel_limit",
        PendingReasonKind.WaitingForWorkers => "waiting_for_workers",
        PendingReasonKind.NoMatchingWorker => "no_matching_worker",
        PendingReasonKind.SweepPaused => "sweep_paused",
        _ => "unknown",
    };

    public static IReadOnlyList<PendingReasonKind> All { get; } = Enum.GetValues<PendingReasonKind>();
}

/// <summary>A worker's free capacity at the start of a scheduling pass (the planner's input).</summary>
/// <param name="Id">The worker.</param>
/// <param name="Gpus">Every GPU index it offers (empty: a CPU worker, one slot).</param>
/// <param name="FreeGpus">Those not held by a running rank.</param>
/// <param name="Busy">A CPU worker: runs something (its one slot is taken).</param>
/// <param name="Eligible">Takes work now (not draining, heartbeating); an ineligible worker still counts for "could ever fit".</param>
/// <param name="HasDataEndpoint">Peers can reach it, so it may join a gang of several workers.</param>
public sealed record WorkerCapacity(string Id, IReadOnlyList<int> Gpus, IReadOnlyList<int> FreeGpus, bool Busy, bool Eligible = true, bool HasDataEndpoint = true)
{
    public bool IsGpuWorker => Gpus.Count > 0;
}

namespace Orchestrator.Coordinator.Workers;

/// <summary>A GPU a worker offers: the N of cuda:N on that worker, its model name and memory (empty and 0 when unknown).</summary>
public sealed record GpuDevice(int Index, string Name = "", long MemoryBytes = 0);

/// <summary>
/// What a worker offers, as the scheduler sees it (the domain's copy of the Hello's capabilities;
/// the gRPC layer maps one to the other). A worker with GPUs offers one slot per GPU; a worker
/// without offers one slot, so it runs one trial at a time.
/// </summary>
public sealed record WorkerResources
{
    /// <summary>"cpu" or "cuda": what the worker trains on by default.</summary>
    public string Device { get; init; } = "cpu";
    /// <summary>The GPUs it may use, in index order; empty on a CPU worker.</summary>
    public IReadOnlyList<GpuDevice> Gpus { get; init; } = [];
    /// <summary>Device memory of the first GPU, or host memory on CPU.</summary>
    public long MemoryBytes { get; init; }
    public int CpuCores { get; init; }
    public string Version { get; init; } = "";
    public string Host { get; init; } = "";

    /// <summary>Trials (or ranks) the worker runs at once: one per GPU, one on a CPU worker.</summary>
    public int Slots => Math.Max(1, Gpus.Count);
}

/// <summary>One rank of an assignment: the worker that runs it and the GPUs it holds there (none on a CPU slot).</summary>
public sealed record GangRank(WorkerConnection Worker, IReadOnlyList<int> Gpus);

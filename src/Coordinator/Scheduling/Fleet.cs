namespace Orchestrator.Coordinator.Scheduling;

/// <summary>
/// The free capacity of the connected workers during one scheduling pass, and the placement rule.
/// Pure: no store, no gRPC, no clock; the scheduler builds it from the registry and reserves what
/// it assigned, and tests build it from plain records.
/// <list type="bullet">
/// <item>A worker with GPUs offers one slot per GPU; a worker without offers one slot.</item>
/// <item>A rank of a GPU trial (gpusPerWorker g ≥ 1) needs g free GPUs on one worker, so a worker
/// hosts ⌊free GPUs / g⌋ of its ranks. It never lands on a CPU worker.</item>
/// <item>A rank of a CPU trial (g = 0) takes a CPU worker's slot, or, when no CPU worker is free,
/// one GPU slot (it then trains on that GPU).</item>
/// <item>A gang of W ranks starts only when all W fit at once (a re-queued trial may shrink to its
/// minWorkers). It goes on the one worker that fits it with the fewest GPUs to spare when there
/// is one, else it spreads over the workers with the most room, so big nodes stay whole for big
/// gangs and a gang uses as few machines as it can.</item>
/// </list>
/// </summary>
public sealed class Fleet
{
    private readonly List<Node> _nodes;

    private sealed class Node(WorkerCapacity capacity)
    {
        public WorkerCapacity Capacity { get; } = capacity;
        public List<int> Free { get; } = capacity.FreeGpus.Order().ToList();
        public bool CpuFree { get; set; } = !capacity.Busy;
    }

    public Fleet(IEnumerable<WorkerCapacity> workers) => _nodes = workers.Select(w => new Node(w)).ToList();

    /// <summary>Ranks that fit right now for a trial needing <paramref name="gpusPerRank"/> GPUs per rank.</summary>
    public int FreeRanks(int gpusPerRank) => _nodes.Where(n => n.Capacity.Eligible).Sum(n => RanksOn(n, gpusPerRank));

    /// <summary>
    /// Places a gang, or says why it cannot start now. Nothing is reserved: call
    /// <see cref="Reserve"/> once the assignment stuck.
    /// </summary>
    public bool TryPlace(GangRequest request, out IReadOnlyList<RankSlot> ranks, out PendingReason? reason)
    {
        var g = Math.Max(0, request.GpusPerRank);
        var want = Math.Max(1, request.Ranks);
        ranks = [];
        reason = null;
        if (!_nodes.Any(n => g == 0 || n.Capacity.Gpus.Count >= g))
        {
            reason = new PendingReason(PendingReasonKind.NoMatchingWorker, _nodes.Count == 0
                ? "no worker is connected"
                : $"needs {g} {Plural(g, "GPU")} on one worker; no connected worker has that many (most: {_nodes.Max(n => n.Capacity.Gpus.Count)})");
            return false;
        }
        // Ranks of a gang find each other through their workers' data endpoints.
        var candidates = _nodes.Where(n => n.Capacity.Eligible && RanksOn(n, g) > 0 && (want == 1 || n.Capacity.HasDataEndpoint)).ToList();
        var total = candidates.Sum(n => RanksOn(n, g));
        var count = want;
        if (total < want)
        {
            if (!request.MayShrink || total < Math.Max(1, request.MinRanks))
            {
                reason = new PendingReason(PendingReasonKind.WaitingForWorkers,
                    g > 0 ? $"needs {want} {Plural(want, "worker")} with {g} {Plural(g, "GPU")}; {total} idle"
                          : $"needs {want} {Plural(want, "worker")}; {total} idle");
                return false;
            }
            count = total;
        }

        var single = candidates.Where(n => RanksOn(n, g) >= count)
            .OrderBy(n => g == 0 && !n.Capacity.IsGpuWorker ? 0 : 1)
            .ThenBy(n => n.Free.Count)
            .FirstOrDefault();
        List<Node> order = single is not null
            ? [single]
            : candidates.OrderBy(n => g == 0 && !n.Capacity.IsGpuWorker ? 0 : 1).ThenByDescending(n => RanksOn(n, g)).ToList();
        var placed = new List<RankSlot>(count);
        foreach (var node in order)
        {
            var free = node.Free.ToList();
            for (var r = RanksOn(node, g); r > 0 && placed.Count < count; r--)
            {
                var take = node.Capacity.IsGpuWorker ? Math.Max(1, g) : 0;
                placed.Add(new RankSlot(node.Capacity.Id, free.Take(take).ToList()));
                free.RemoveRange(0, take);
            }
            if (placed.Count == count) break;
        }
        ranks = placed;
        return true;
    }

    /// <summary>Marks the slots of an assigned gang as taken for the rest of the pass.</summary>
    public void Reserve(IEnumerable<RankSlot> ranks)
    {
        foreach (var rank in ranks)
        {
            var node = _nodes.First(n => n.Capacity.Id == rank.WorkerId);
            if (node.Capacity.IsGpuWorker) node.Free.RemoveAll(rank.Gpus.Contains);
            else node.CpuFree = false;
        }
    }

    private static int RanksOn(Node n, int gpusPerRank) => gpusPerRank > 0
        ? (n.Capacity.IsGpuWorker ? n.Free.Count / gpusPerRank : 0)
        : (n.Capacity.IsGpuWorker ? n.Free.Count : (n.CpuFree ? 1 : 0));

    private static string Plural(int n, string word) => n == 1 ? word : word + "s";
}

using Orchestrator.Coordinator.Scheduling;

namespace Orchestrator.Coordinator.UnitTests.Scheduling;

/// <summary>The placement rule on its own: workers as plain capacity records, no server.</summary>
public sealed class FleetTests
{
    private static WorkerCapacity Cpu(string id, bool busy = false, bool eligible = true) => new(id, [], [], busy, eligible);

    private static WorkerCapacity Gpu(string id, int gpus, IEnumerable<int>? busy = null, bool eligible = true, bool endpoint = true)
    {
        var all = Enumerable.Range(0, gpus).ToList();
        var held = (busy ?? []).ToHashSet();
        return new WorkerCapacity(id, all, all.Where(g => !held.Contains(g)).ToList(), held.Count > 0, eligible, endpoint);
    }

    /// <summary>Places and reserves, as the scheduler does after a successful assignment.</summary>
    private static IReadOnlyList<RankSlot> Assign(Fleet fleet, GangRequest request)
    {
        Assert.True(fleet.TryPlace(request, out var ranks, out var reason), $"expected a placement, got: {reason?.Text}");
        fleet.Reserve(ranks);
        return ranks;
    }

    [Fact]
    public void A_GPU_trial_is_never_placed_on_a_CPU_worker()
    {
        var fleet = new Fleet([Cpu("c1"), Cpu("c2")]);

        Assert.False(fleet.TryPlace(new GangRequest(1, GpusPerRank: 1), out var ranks, out var reason));

        Assert.Empty(ranks);
        Assert.Equal(PendingReasonKind.NoMatchingWorker, reason!.Kind);
        Assert.Equal("needs 1 GPU on one worker; no connected worker has that many (most: 0)", reason.Text);
    }

    [Fact]
    public void A_GPU_trial_skips_free_CPU_workers_for_a_GPU_worker_listed_after_them()
    {
        var fleet = new Fleet([Cpu("c1"), Cpu("c2"), Gpu("g1", 1)]);

        var ranks = Assign(fleet, new GangRequest(1, GpusPerRank: 1));

        Assert.Equal([new RankSlot("g1", [0])], ranks, RankComparer.Instance);
    }

    [Fact]
    public void A_GPU_trial_waits_while_the_only_GPU_is_busy_even_with_CPU_workers_idle()
    {
        var fleet = new Fleet([Cpu("c1"), Gpu("g1", 1, busy: [0])]);

        Assert.False(fleet.TryPlace(new GangRequest(1, GpusPerRank: 1), out _, out var reason));

        Assert.Equal(new PendingReason(PendingReasonKind.WaitingForWorkers, "needs 1 worker with 1 GPU; 0 idle"), reason);
    }

    [Fact]
    public void An_eight_GPU_worker_takes_eight_one_GPU_trials_each_on_its_own_GPU_and_no_ninth()
    {
        var fleet = new Fleet([Gpu("big", 8)]);

        var placed = Enumerable.Range(0, 8).Select(_ => Assign(fleet, new GangRequest(1, GpusPerRank: 1)).Single()).ToList();

        Assert.All(placed, r => Assert.Equal("big", r.WorkerId));
        Assert.Equal(Enumerable.Range(0, 8), placed.Select(r => r.Gpus.Single()).Order());
        Assert.False(fleet.TryPlace(new GangRequest(1, GpusPerRank: 1), out _, out var reason));
        Assert.Equal("needs 1 worker with 1 GPU; 0 idle", reason!.Text);
    }

    [Fact]
    public void An_eight_rank_trial_fits_on_one_eight_GPU_worker_one_rank_per_GPU()
    {
        var fleet = new Fleet([Gpu("small", 2), Gpu("big", 8)]);

        var ranks = Assign(fleet, new GangRequest(8, GpusPerRank: 1));

        Assert.Equal(8, ranks.Count);
        Assert.All(ranks, r => Assert.Equal("big", r.WorkerId));
        Assert.Equal(Enumerable.Range(0, 8), ranks.Select(r => r.Gpus.Single()));
        Assert.Equal(2, fleet.FreeRanks(1)); // the small worker is untouched
    }

    [Fact]
    public void A_gang_larger_than_the_idle_GPU_fleet_waits_and_says_how_many_are_idle()
    {
        var fleet = new Fleet([Gpu("g1", 1), Gpu("g2", 1, busy: [0]), Cpu("c1")]);

        Assert.False(fleet.TryPlace(new GangRequest(2, GpusPerRank: 1), out var ranks, out var reason));

        Assert.Empty(ranks);
        Assert.Equal(new PendingReason(PendingReasonKind.WaitingForWorkers, "needs 2 workers with 1 GPU; 1 idle"), reason);
    }

    [Fact]
    public void A_gang_spreads_over_workers_with_the_most_room_when_no_single_worker_fits_it()
    {
        var fleet = new Fleet([Gpu("a", 2), Gpu("b", 4, busy: [0]), Gpu("c", 1)]);

        var ranks = Assign(fleet, new GangRequest(5, GpusPerRank: 1));

        Assert.Equal(["b", "b", "b", "a", "a"], ranks.Select(r => r.WorkerId));
        Assert.Equal([1, 2, 3, 0, 1], ranks.Select(r => r.Gpus.Single()));
        Assert.Equal(1, fleet.FreeRanks(1));
    }

    [Fact]
    public void Several_GPUs_per_rank_come_from_one_worker_and_go_to_the_tightest_fit()
    {
        var fleet = new Fleet([Gpu("big", 8), Gpu("pair", 2), Gpu("three", 3, busy: [0, 1])]);

        var ranks = Assign(fleet, new GangRequest(1, GpusPerRank: 2));

        Assert.Equal([new RankSlot("pair", [0, 1])], ranks, RankComparer.Instance);
        // The worker with one GPU free cannot host a 2-GPU rank; the big one hosts four.
        Assert.Equal(4, fleet.FreeRanks(2));
    }

    [Fact]
    public void A_CPU_trial_prefers_a_CPU_worker_then_takes_one_GPU_slot()
    {
        var fleet = new Fleet([Gpu("g1", 2), Cpu("c1")]);

        var first = Assign(fleet, new GangRequest(1, GpusPerRank: 0));
        var second = Assign(fleet, new GangRequest(1, GpusPerRank: 0));

        Assert.Equal([new RankSlot("c1", [])], first, RankComparer.Instance);
        Assert.Equal([new RankSlot("g1", [0])], second, RankComparer.Instance);
        Assert.Equal(1, fleet.FreeRanks(1));
    }

    [Fact]
    public void A_CPU_worker_runs_one_trial_at_a_time()
    {
        var fleet = new Fleet([Cpu("c1", busy: true)]);

        Assert.False(fleet.TryPlace(new GangRequest(1, GpusPerRank: 0), out _, out var reason));

        Assert.Equal(new PendingReason(PendingReasonKind.WaitingForWorkers, "needs 1 worker; 0 idle"), reason);
    }

    [Fact]
    public void Draining_or_silent_workers_take_nothing_but_still_count_as_able_to_fit()
    {
        var fleet = new Fleet([Gpu("g1", 4, eligible: false)]);

        Assert.False(fleet.TryPlace(new GangRequest(1, GpusPerRank: 1), out _, out var reason));

        Assert.Equal(PendingReasonKind.WaitingForWorkers, reason!.Kind);
    }

    [Fact]
    public void No_worker_at_all_is_said_plainly()
    {
        Assert.False(new Fleet([]).TryPlace(new GangRequest(1, GpusPerRank: 0), out _, out var reason));

        Assert.Equal(new PendingReason(PendingReasonKind.NoMatchingWorker, "no worker is connected"), reason);
    }

    [Fact]
    public void A_requeued_gang_may_restart_on_fewer_ranks_down_to_its_minimum()
    {
        var fleet = new Fleet([Gpu("g1", 1), Gpu("g2", 1), Gpu("g3", 1, busy: [0])]);

        Assert.False(fleet.TryPlace(new GangRequest(3, 1, MinRanks: 3, MayShrink: true), out _, out _));
        Assert.False(fleet.TryPlace(new GangRequest(3, 1, MinRanks: 2, MayShrink: false), out _, out _));
        var ranks = Assign(fleet, new GangRequest(3, 1, MinRanks: 2, MayShrink: true));

        Assert.Equal(["g1", "g2"], ranks.Select(r => r.WorkerId));
    }

    [Fact]
    public void A_gang_across_workers_uses_only_workers_peers_can_reach()
    {
        var fleet = new Fleet([Gpu("hidden", 1, endpoint: false), Gpu("g1", 1)]);

        Assert.False(fleet.TryPlace(new GangRequest(2, GpusPerRank: 1), out _, out var reason));
        Assert.Equal("needs 2 workers with 1 GPU; 1 idle", reason!.Text);
        // Alone, it needs no peers.
        Assert.Single(Assign(fleet, new GangRequest(1, GpusPerRank: 1)));
    }

    private sealed class RankComparer : IEqualityComparer<RankSlot>
    {
        public static RankComparer Instance { get; } = new();
        public bool Equals(RankSlot? x, RankSlot? y) => x is not null && y is not null && x.WorkerId == y.WorkerId && x.Gpus.SequenceEqual(y.Gpus);
        public int GetHashCode(RankSlot obj) => obj.WorkerId.GetHashCode(StringComparison.Ordinal);
    }
}

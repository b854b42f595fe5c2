using Orchestrator.Coordinator.Domain;
using Orchestrator.Coordinator.Scheduling;

namespace Orchestrator.Coordinator.UnitTests.Scheduling;

public sealed class PendingReasonsTests
{
    private static readonly PendingReason NeedsTwo = new(PendingReasonKind.WaitingForWorkers, "needs 2 workers with 1 GPU; 1 idle");
    private static readonly PendingReason Limit = new(PendingReasonKind.ParallelLimit, "parallelTrials reached (1 running)");

    private static TrialRecord Trial(string sweepId, TrialStatus state = TrialStatus.Pending) =>
        new() { Id = sweepId + "-t0000", SweepId = sweepId, TrialYaml = "", State = state };

    [Fact]
    public void A_pass_reports_which_sweeps_reasons_appeared_changed_or_cleared()
    {
        var reasons = new PendingReasons();

        Assert.Equal(["a", "b"], reasons.Replace(new Dictionary<string, SweepWait> { ["a"] = new(NeedsTwo, 3), ["b"] = new(Limit, 1) }).Order());
        // The same reasons with other counts are no change for watchers.
        Assert.Empty(reasons.Replace(new Dictionary<string, SweepWait> { ["a"] = new(NeedsTwo, 2), ["b"] = new(Limit, 1) }));
        Assert.Equal(["a", "b"], reasons.Replace(new Dictionary<string, SweepWait> { ["a"] = new(Limit, 2) }).Order());

        Assert.Equal(Limit, reasons.Of(Trial("a")));
        Assert.Null(reasons.Of(Trial("b")));
        // Only pending trials wait.
        Assert.Null(reasons.Of(Trial("a", TrialStatus.Running)));
    }

    [Fact]
    public void Counts_list_every_reason_with_zero_when_none_waits_for_it_and_count_trials_not_sweeps()
    {
        var reasons = new PendingReasons();
        Assert.All(reasons.Counts(), c => Assert.Equal(0, c.Count));
        Assert.Equal(4, reasons.Counts().Count);

        reasons.Replace(new Dictionary<string, SweepWait> { ["a"] = new(NeedsTwo, 100_000), ["b"] = new(NeedsTwo, 2), ["c"] = new(Limit, 1) });

        var counts = reasons.Counts().ToDictionary(c => PendingReasonLabels.Of(c.Kind), c => c.Count);
        Assert.Equal(new Dictionary<string, long> { ["parallel_limit"] = 1, ["waiting_for_workers"] = 100_002, ["no_matching_worker"] = 0, ["sweep_paused"] = 0 }, counts);
    }
}

using Orchestrator.Coordinator.Scheduling;

namespace Orchestrator.Coordinator.UnitTests.Scheduling;

public sealed class PendingReasonsTests
{
    private static readonly PendingReason NeedsTwo = new(PendingReasonKind.WaitingForWorkers, "needs 2 workers with 1 GPU; 1 idle");
    private static readonly PendingReason Limit = new(PendingReasonKind.ParallelLimit, "parallelTrials reached (1 running)");

    [Fact]
    public void A_pass_reports_which_reasons_appeared_changed_or_cleared()
    {
        var reasons = new PendingReasons();

        Assert.Equal(["a", "b"], reasons.Replace(new Dictionary<string, PendingReason> { ["a"] = NeedsTwo, ["b"] = Limit }).Order());
        Assert.Empty(reasons.Replace(new Dictionary<string, PendingReason> { ["a"] = NeedsTwo, ["b"] = Limit }));
        Assert.Equal(["a", "b"], reasons.Replace(new Dictionary<string, PendingReason> { ["a"] = Limit }).Order());

        Assert.Equal(Limit, reasons.Of("a"));
        Assert.Null(reasons.Of("b"));
    }

    [Fact]
    public void Counts_list_every_reason_with_zero_when_none_waits_for_it()
    {
        var reasons = new PendingReasons();
        Assert.All(reasons.Counts(), c => Assert.Equal(0, c.Count));
        Assert.Equal(3, reasons.Counts().Count);

        reasons.Replace(new Dictionary<string, PendingReason> { ["a"] = NeedsTwo, ["b"] = NeedsTwo, ["c"] = Limit });

        var counts = reasons.Counts().ToDictionary(c => PendingReasonLabels.Of(c.Kind), c => c.Count);
        Assert.Equal(new Dictionary<string, long> { ["parallel_limit"] = 1, ["waiting_for_workers"] = 2, ["no_matching_worker"] = 0 }, counts);
    }
}

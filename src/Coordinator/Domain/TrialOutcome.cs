namespace Orchestrator.Coordinator.Domain;

/// <summary>What a worker reports about a trial it runs (the domain's copy of TrialStatus.Outcome).</summary>
public enum TrialOutcome
{
    /// <summary>Training started.</summary>
    Started,
    /// <summary>All epochs trained; the final checkpoint was uploaded first.</summary>
    Completed,
    /// <summary>Failed in a way a retry may fix: re-queued, counting an attempt.</summary>
    Failed,
    /// <summary>Failed in a way a retry will not fix: the trial fails.</summary>
    FailedPermanently,
    /// <summary>Stopped on the coordinator's request (the trial already moved on).</summary>
    Stopped,
    /// <summary>A rank other than 0 finished its part; its GPUs are free.</summary>
    RankDone,
    /// <summary>Handed back by a draining worker at an epoch boundary: re-queued without counting an attempt.</summary>
    Drained,
}

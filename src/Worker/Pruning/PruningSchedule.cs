using Orchestrator.Trials;

namespace Orchestrator.Worker.Pruning;

/// <summary>
/// When masks are updated and to which sparsity: the cubic schedule of Zhu &amp; Gupta ("To prune,
/// or not to prune", 2017), in optimiser steps.
/// <code>s(t) = s_f + (s_i − s_f) · (1 − (t − t0) / (t1 − t0))³   for t0 ≤ t ≤ t1</code>
/// where t counts completed steps, t0 = startEpoch × B, t1 = endEpoch × B and B is the number of
/// batches per epoch. Masks are updated at t0, t0 + Δt, t0 + 2Δt, … and at t1 itself, so the
/// target is reached exactly whatever the frequency Δt; after t1 the masks stay as they are
/// (fine-tuning). Free of tensors: a test checks it against hand-computed values.
/// </summary>
public sealed record PruningSchedule(long StartStep, long EndStep, int Frequency, double InitialSparsity, double FinalSparsity)
{
    /// <summary>The schedule of <paramref name="spec"/> in a run of <paramref name="epochs"/> epochs of <paramref name="batchesPerEpoch"/> steps.</summary>
    public static PruningSchedule For(PruningSpec spec, int epochs, int batchesPerEpoch) => new(
        (long)spec.StartEpoch * batchesPerEpoch, (long)spec.EndEpochFor(epochs) * batchesPerEpoch, spec.Frequency,
        spec.InitialSparsity, spec.Sparsity);

    /// <summary>The sparsity the masks should have after <paramref name="step"/> completed steps.</summary>
    public double SparsityAt(long step)
    {
        if (step < StartStep) return 0;
        if (step >= EndStep || EndStep <= StartStep) return FinalSparsity;
        var remaining = 1 - (double)(step - StartStep) / (EndStep - StartStep);
        return FinalSparsity + (InitialSparsity - FinalSparsity) * remaining * remaining * remaining;
    }

    /// <summary>Whether the masks are recomputed after <paramref name="step"/> completed steps.</summary>
    public bool UpdatesAt(long step) =>
        step >= StartStep && step <= EndStep && ((step - StartStep) % Frequency == 0 || step == EndStep);
}

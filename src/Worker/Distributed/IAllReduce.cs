namespace Orchestrator.Worker.Distributed;

/// <summary>
/// A collective that combines one flat fp32 buffer across the W ranks of a data-parallel trial.
/// </summary>
/// <remarks>
/// Every rank calls <see cref="AllReduceAsync"/> with a buffer of the same length, in the same
/// order. When the call returns, each rank's buffer holds the element-wise result (the mean over
/// ranks by default, see <see cref="ReduceOperation"/>), and the bits are identical on every rank:
/// each element is reduced once, in a fixed order, by one rank and then copied to the others, so
/// replicas never drift apart. A failed or cancelled collective leaves the buffer undefined and the
/// instance broken (the ranks no longer agree on where the stream stands); create a new one.
/// </remarks>
public interface IAllReduce : IAsyncDisposable
{
    /// <summary>This process's rank, 0 ≤ rank &lt; <see cref="WorldSize"/>.</summary>
    int Rank { get; }

    /// <summary>Number of ranks taking part.</summary>
    int WorldSize { get; }

    /// <summary>
    /// Reduces <paramref name="buffer"/> in place across all ranks. One call at a time per instance.
    /// </summary>
    /// <exception cref="CollectiveException">A peer died, stalled past the timeout, or disagreed
    /// about the call (length, order).</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> fired; the
    /// other ranks then fail with <see cref="CollectiveException"/>.</exception>
    ValueTask AllReduceAsync(Memory<float> buffer, CancellationToken cancellationToken);
}

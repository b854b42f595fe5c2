namespace Orchestrator.Sweeps;

/// <summary>What a searcher asks the coordinator to do.</summary>
public abstract record SearchAction;

/// <summary>Create trial <paramref name="Index"/> (0-based, in creation order) with these parameters (dotted path → invariant-culture text); <see cref="ValidatedSweep.TrialFor"/> makes the full trial.</summary>
public sealed record CreateTrial(int Index, IReadOnlyDictionary<string, string> Parameters) : SearchAction
{
    /// <summary>Equal when the index and every parameter are equal (records compare dictionaries by reference otherwise).</summary>
    public bool Equals(CreateTrial? other) =>
        other is not null && Index == other.Index && Parameters.Count == other.Parameters.Count &&
        Parameters.All(kv => other.Parameters.TryGetValue(kv.Key, out var v) && v == kv.Value);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(Index, Parameters.Count);

    /// <inheritdoc />
    public override string ToString() =>
        $"CreateTrial {Index} {{ {string.Join(", ", Parameters.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key}={kv.Value}"))} }}";
}

/// <summary>Stop trial <paramref name="Index"/> early (keeping its checkpoint and metrics): it is not worth finishing.</summary>
public sealed record StopTrial(int Index) : SearchAction
{
    /// <summary>Why, for people ("stopped early by asha after epoch 3 (val_accuracy 0.61)").</summary>
    public string Reason { get; init; } = "stopped early";
}

/// <summary>
/// Train trial <paramref name="Index"/>, which had completed, on from its latest checkpoint to the
/// sweep's raised epochs (orch extend --epochs).
/// </summary>
public sealed record ResumeTrial(int Index) : SearchAction;

/// <summary>
/// The search is over: create nothing more, cancel pending trials and stop running ones.
/// <paramref name="Reason"/> is for people ("target 0.95 reached by trial 3").
/// </summary>
public sealed record ShutdownSearch(string Reason) : SearchAction
{
    /// <summary>True when the sweep ends as failed (too many failed trials) rather than done.</summary>
    public bool Failed { get; init; }
}

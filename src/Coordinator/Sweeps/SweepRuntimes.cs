using System.Collections.Concurrent;
using Orchestrator.Coordinator.Domain;
using Orchestrator.Specs;
using Orchestrator.Sweeps;

namespace Orchestrator.Coordinator.Sweeps;

/// <summary>A sweep's in-memory companions: the validated spec, its searcher, and a lock for sweep-level updates.</summary>
public sealed class SweepRuntime(SweepRecord sweep, ValidatedSweep spec, Searcher searcher)
{
    public string Id { get; } = sweep.Id;
    public DateTimeOffset CreatedAt { get; } = sweep.CreatedAt;
    /// <summary>The validated spec, with the epochs orch extend --epochs raised (swapped under <see cref="Gate"/>).</summary>
    public ValidatedSweep Spec
    {
        get => Volatile.Read(ref _spec);
        set => Volatile.Write(ref _spec, value);
    }

    private ValidatedSweep _spec = spec;
    public Searcher Searcher { get; } = searcher;
    /// <summary>Serialises the searcher's events and the sweep record updates made from them.</summary>
    public SemaphoreSlim Gate { get; } = new(1, 1);

    /// <summary>The sweep is ending (its trials are being cancelled): assign none of its trials any more.</summary>
    public bool Finishing
    {
        get => Volatile.Read(ref _finishing);
        set => Volatile.Write(ref _finishing, value);
    }

    /// <summary>The sweep is paused (orch pause): the scheduler assigns none of its trials until it resumes.</summary>
    public bool Paused
    {
        get => Volatile.Read(ref _paused);
        set => Volatile.Write(ref _paused, value);
    }

    private bool _paused = sweep.State == SweepStatus.Paused;

    /// <summary>The sweep's best objective as last written (read and written under <see cref="Gate"/>).</summary>
    public double? Best { get; set; } = sweep.BestMetric;

    // A runtime built for a sweep that already ended (a late outcome of one of its trials) is finishing from the start.
    private bool _finishing = !sweep.IsUnfinished;
}

/// <summary>
/// The runtimes of unfinished sweeps, built from the stored sweep on first use (after a restart:
/// spec parsed again, searcher restored from its saved state) and dropped when the sweep ends.
/// </summary>
public sealed class SweepRuntimes
{
    /// <summary>A stored spec was accepted at submit: it is read back without the submit-time limits.</summary>
    private static readonly SweepLimits Unlimited = new(int.MaxValue, int.MaxValue, int.MaxValue);

    private readonly ConcurrentDictionary<string, SweepRuntime> _runtimes = new(StringComparer.Ordinal);

    /// <summary>Holds the runtime of a sweep just submitted.</summary>
    public void Add(string sweepId, SweepRuntime runtime) => _runtimes[sweepId] = runtime;

    /// <summary>The runtime of an unfinished sweep, built on first use. Throws <see cref="SpecException"/> when its spec no longer validates.</summary>
    public SweepRuntime Of(SweepRecord sweep) => _runtimes.GetOrAdd(sweep.Id, static (_, s) =>
    {
        var spec = Parse(s);
        var searcher = s.SearcherState is { } state ? Searcher.Restore(spec, state) : Searcher.Create(spec);
        return new SweepRuntime(s, spec, searcher);
    }, sweep);

    /// <summary>
    /// The sweeps the scheduler serves (pending or running, not finishing, not paused), oldest first: from
    /// memory, so a scheduler pass never reads the sweeps' records (their spec and searcher state).
    /// </summary>
    public IReadOnlyList<SweepRuntime> Active() =>
        [.. _runtimes.Values.Where(r => !r.Finishing && !r.Paused).OrderBy(r => r.CreatedAt).ThenBy(r => r.Id, StringComparer.Ordinal)];

    /// <summary>The paused sweeps' runtimes.</summary>
    public IReadOnlyList<SweepRuntime> Paused() => [.. _runtimes.Values.Where(r => r.Paused && !r.Finishing)];

    /// <summary>The cached runtime, without reading the store.</summary>
    public bool TryGet(string sweepId, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out SweepRuntime? runtime) =>
        _runtimes.TryGetValue(sweepId, out runtime);

    /// <summary>Forgets a finished sweep's runtime.</summary>
    public void Remove(string sweepId) => _runtimes.TryRemove(sweepId, out _);

    /// <summary>The spec of a sweep (cached while it runs), or null when it cannot be validated any more.</summary>
    public ValidatedSweep? TrySpecOf(SweepRecord sweep)
    {
        try
        {
            return sweep.IsUnfinished ? Of(sweep).Spec : Parse(sweep);
        }
        catch (SpecException)
        {
            return null;
        }
    }

    /// <summary>The stored spec, with the epochs orch extend --epochs raised.</summary>
    private static ValidatedSweep Parse(SweepRecord sweep)
    {
        var spec = ValidatedSweep.Parse(sweep.SpecYaml, sweep.Name, Unlimited);
        return sweep.Epochs is { } epochs ? spec.WithEpochs(epochs) : spec;
    }
}

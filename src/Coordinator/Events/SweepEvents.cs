using System.Collections.Concurrent;
using System.Threading.Channels;
using Orchestrator.Coordinator.Domain;

namespace Orchestrator.Coordinator.Events;

/// <summary>Something that changed in a sweep, as the domain says it (the WatchSweep edge maps it to its message).</summary>
public abstract record SweepUpdate(string SweepId);

/// <summary>The sweep record changed (state, best trial, end).</summary>
public sealed record SweepChanged(SweepRecord Sweep) : SweepUpdate(Sweep.Id);

/// <summary>A trial changed (state, lease, metrics) or its pending reason did.</summary>
public sealed record TrialChanged(TrialRecord Trial) : SweepUpdate(Trial.SweepId);

/// <summary>A metric point was stored for a trial.</summary>
public sealed record MetricRecorded(string SweepId, string TrialId, MetricPointRecord Point) : SweepUpdate(SweepId);

/// <summary>
/// Fans sweep events out to watchers (WatchSweep streams). Each watcher has its own bounded
/// channel; a watcher too slow to keep up loses the oldest events rather than slowing training
/// (it gets a fresh snapshot on its next watch).
/// </summary>
public sealed class SweepEvents
{
    private readonly ConcurrentDictionary<string, ConcurrentDictionary<Guid, Channel<SweepUpdate>>> _watchers = new();

    public bool HasWatchers(string sweepId) => _watchers.TryGetValue(sweepId, out var set) && !set.IsEmpty;

    public void Publish(SweepUpdate e)
    {
        if (!_watchers.TryGetValue(e.SweepId, out var set)) return;
        foreach (var channel in set.Values) channel.Writer.TryWrite(e);
    }

    /// <summary>Subscribes; dispose the result to unsubscribe.</summary>
    public Subscription Subscribe(string sweepId)
    {
        var channel = Channel.CreateBounded<SweepUpdate>(new BoundedChannelOptions(1024)
        {
            FullMode = BoundedChannelFullMode.DropOldest,
            SingleReader = true,
        });
        var id = Guid.NewGuid();
        _watchers.GetOrAdd(sweepId, _ => new()).TryAdd(id, channel);
        return new Subscription(channel.Reader, () =>
        {
            if (_watchers.TryGetValue(sweepId, out var set)) set.TryRemove(id, out _);
            channel.Writer.TryComplete();
        });
    }

    public sealed class Subscription(ChannelReader<SweepUpdate> reader, Action unsubscribe) : IDisposable
    {
        public ChannelReader<SweepUpdate> Reader { get; } = reader;
        public void Dispose() => unsubscribe();
    }
}

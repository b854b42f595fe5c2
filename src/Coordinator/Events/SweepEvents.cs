using System.Collections.Concurrent;
using System.Threading.Channels;
using Orchestrator.Protocol.V1;

namespace Orchestrator.Coordinator.Events;

/// <summary>
/// Fans sweep events out to watchers (WatchSweep streams). Each watcher has its own bounded
/// channel; a watcher too slow to keep up loses the oldest events rather than slowing training
/// (it gets a fresh snapshot on its next watch).
/// </summary>
public sealed class SweepEvents
{
    private readonly ConcurrentDictionary<string, ConcurrentDictionary<Guid, Channel<SweepEvent>>> _watchers = new();

    public bool HasWatchers(string sweepId) => _watchers.TryGetValue(sweepId, out var set) && !set.IsEmpty;

    public void Publish(string sweepId, SweepEvent e)
    {
        if (!_watchers.TryGetValue(sweepId, out var set)) return;
        foreach (var channel in set.Values) channel.Writer.TryWrite(e);
    }

    /// <summary>Subscribes; dispose the result to unsubscribe.</summary>
    public Subscription Subscribe(string sweepId)
    {
        var channel = Channel.CreateBounded<SweepEvent>(new BoundedChannelOptions(1024)
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

    public sealed class Subscription(ChannelReader<SweepEvent> reader, Action unsubscribe) : IDisposable
    {
        public ChannelReader<SweepEvent> Reader { get; } = reader;
        public void Dispose() => unsubscribe();
    }
}

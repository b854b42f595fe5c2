using System.Collections.Concurrent;
using System.Threading.Channels;
using Orchestrator.Protocol.V1;

namespace Orchestrator.Coordinator.Workers;

/// <summary>A worker connected to this coordinator: its identity and the outbox of its control stream.</summary>
public sealed class WorkerConnection
{
    private readonly Channel<CoordinatorMessage> _outbox = Channel.CreateUnbounded<CoordinatorMessage>(new UnboundedChannelOptions { SingleReader = true });
    private readonly ConcurrentDictionary<string, long> _trials = new(StringComparer.Ordinal);

    public WorkerConnection(string id, string name, WorkerCapabilities capabilities, string dataEndpoint = "")
    {
        DataEndpoint = dataEndpoint;
        Id = id;
        Name = name;
        Capabilities = capabilities;
        ConnectedAt = DateTimeOffset.UtcNow;
        LastHeartbeat = ConnectedAt;
    }

    public string Id { get; }

    /// <summary>Where peers reach this worker's gradient exchange ("host:port").</summary>
    public string DataEndpoint { get; }
    public string Name { get; }
    public WorkerCapabilities Capabilities { get; }
    public DateTimeOffset ConnectedAt { get; }
    public DateTimeOffset LastHeartbeat { get; set; }
    public bool Draining { get; set; }

    /// <summary>Trials this worker runs, with the fencing token of each.</summary>
    public IReadOnlyDictionary<string, long> Trials => _trials;

    public bool IsIdle => !Draining && _trials.IsEmpty;

    public ChannelReader<CoordinatorMessage> Outbox => _outbox.Reader;

    /// <summary>Queues a message for the stream's single writer loop.</summary>
    public void Send(CoordinatorMessage message) => _outbox.Writer.TryWrite(message);

    public void Attach(string trialId, long token) => _trials[trialId] = token;

    public void Detach(string trialId) => _trials.TryRemove(trialId, out _);

    /// <summary>Detaches only the assignment with this token (a newer assignment of the same trial stays).</summary>
    public void Detach(string trialId, long token) => _trials.TryRemove(new KeyValuePair<string, long>(trialId, token));

    public void Close() => _outbox.Writer.TryComplete();
}

/// <summary>The workers connected right now (in memory; the store keeps the last-seen view).</summary>
public sealed class WorkerRegistry
{
    private readonly ConcurrentDictionary<string, WorkerConnection> _workers = new(StringComparer.Ordinal);

    /// <summary>Raised when a worker connects or frees up, so the scheduler looks for work at once.</summary>
    public event Action? Changed;

    public IReadOnlyCollection<WorkerConnection> All => (IReadOnlyCollection<WorkerConnection>)_workers.Values;

    public WorkerConnection? Find(string id) => _workers.GetValueOrDefault(id);

    /// <summary>Adds a connection, replacing (and closing) an older one of the same worker id.</summary>
    public void Add(WorkerConnection connection)
    {
        _workers.AddOrUpdate(connection.Id, connection, (_, old) =>
        {
            old.Close();
            return connection;
        });
        Signal();
    }

    /// <summary>Removes the connection if it is still the current one for its id.</summary>
    public bool Remove(WorkerConnection connection)
    {
        var removed = _workers.TryRemove(new KeyValuePair<string, WorkerConnection>(connection.Id, connection));
        connection.Close();
        return removed;
    }

    public IReadOnlyList<WorkerConnection> Idle() =>
        _workers.Values.Where(w => w.IsIdle).OrderBy(w => w.ConnectedAt).ToList();

    public void Signal() => Changed?.Invoke();
}

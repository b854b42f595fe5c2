using System.Collections.Concurrent;

namespace Orchestrator.Coordinator.Workers;

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

    /// <summary>Whether a connected worker runs a rank of the trial.</summary>
    public bool Runs(string trialId) => _workers.Values.Any(w => w.Trials.ContainsKey(trialId));

    /// <summary>
    /// Detaches the trial from every worker that runs a rank of it, and tells each to stop it;
    /// <paramref name="afterCheckpoint"/>: once the checkpoint of the epoch just ended is uploaded.
    /// </summary>
    public void StopTrial(string trialId, string reason, bool afterCheckpoint = false)
    {
        foreach (var w in _workers.Values.Where(w => w.Trials.ContainsKey(trialId)))
        {
            w.Detach(trialId);
            w.Send(new StopOrder(trialId, reason) { AfterCheckpoint = afterCheckpoint });
        }
    }

    public IReadOnlyList<WorkerConnection> Idle() =>
        _workers.Values.Where(w => w.IsIdle).OrderBy(w => w.ConnectedAt).ToList();

    public void Signal() => Changed?.Invoke();
}

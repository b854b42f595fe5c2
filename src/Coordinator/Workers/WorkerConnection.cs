using System.Collections.Concurrent;
using System.Threading.Channels;

namespace Orchestrator.Coordinator.Workers;

/// <summary>
/// A worker connected to this coordinator: its identity, what it offers, the ranks it runs (each
/// holding some of its GPUs) and the outbox of its control stream.
/// </summary>
public sealed class WorkerConnection
{
    private readonly Channel<WorkerCommand> _outbox = Channel.CreateUnbounded<WorkerCommand>(new UnboundedChannelOptions { SingleReader = true });
    // Keyed by (trial, rank): a worker with several GPUs may run several ranks of one trial.
    private readonly ConcurrentDictionary<(string Trial, int Rank), RankLease> _ranks = new();
    private readonly IReadOnlyList<string> _deviceEndpoints;

    /// <summary>One rank this worker runs: the trial's fencing token and the GPUs (indexes) it holds.</summary>
    public sealed record RankLease(long Token, IReadOnlyList<int> Gpus);

    public WorkerConnection(string id, string name, WorkerResources resources, DateTimeOffset connectedAt, string dataEndpoint = "", IReadOnlyList<string>? deviceDataEndpoints = null)
    {
        DataEndpoint = dataEndpoint;
        Id = id;
        Name = name;
        Resources = resources;
        _deviceEndpoints = deviceDataEndpoints ?? [];
        ConnectedAt = connectedAt;
        LastHeartbeat = ConnectedAt;
    }

    public string Id { get; }

    /// <summary>Where peers reach this worker's gradient exchange ("host:port").</summary>
    public string DataEndpoint { get; }
    public string Name { get; }
    public WorkerResources Resources { get; }
    public DateTimeOffset ConnectedAt { get; }
    public DateTimeOffset LastHeartbeat { get; set; }

    /// <summary>
    /// When a lease this worker held expired: it is presumed hung, and gets nothing until a
    /// heartbeat after that moment shows it alive (its last heartbeat may be more recent than the
    /// lease's last renewal, e.g. a heartbeat whose renewal lost a race).
    /// </summary>
    public DateTimeOffset? LeaseLapsedAt { get; set; }
    public bool Draining { get; set; }

    /// <summary>Trials this worker runs (one or more ranks each), with the fencing token of each.</summary>
    public IReadOnlyDictionary<string, long> Trials
    {
        get
        {
            var trials = new Dictionary<string, long>(StringComparer.Ordinal);
            foreach (var (key, lease) in _ranks) trials[key.Trial] = lease.Token;
            return trials;
        }
    }

    /// <summary>The ranks it runs now.</summary>
    public IReadOnlyCollection<RankLease> Ranks => (IReadOnlyCollection<RankLease>)_ranks.Values;

    /// <summary>Running nothing and taking work.</summary>
    public bool IsIdle => !Draining && _ranks.IsEmpty;

    /// <summary>Runs at least one rank.</summary>
    public bool IsBusy => !_ranks.IsEmpty;

    /// <summary>The endpoint peers use for the rank on <paramref name="gpus"/> (its first GPU's port on a multi-GPU worker).</summary>
    public string DataEndpointFor(IReadOnlyList<int> gpus)
    {
        if (gpus.Count == 0) return DataEndpoint;
        var slot = Resources.Gpus.ToList().FindIndex(g => g.Index == gpus[0]);
        return slot >= 0 && slot < _deviceEndpoints.Count && _deviceEndpoints[slot].Length > 0 ? _deviceEndpoints[slot] : DataEndpoint;
    }

    /// <summary>Commands for the worker, in order; the worker's stream maps and writes them (its one writer loop).</summary>
    public ChannelReader<WorkerCommand> Outbox => _outbox.Reader;

    /// <summary>Queues a command for the stream's single writer loop.</summary>
    public void Send(WorkerCommand command) => _outbox.Writer.TryWrite(command);

    /// <summary>Notes that this worker runs <paramref name="rank"/> of a trial on <paramref name="gpus"/> (none on CPU).</summary>
    public void Attach(string trialId, long token, int rank = 0, IReadOnlyList<int>? gpus = null) =>
        _ranks[(trialId, rank)] = new RankLease(token, gpus ?? []);

    /// <summary>Detaches every rank of the trial.</summary>
    public void Detach(string trialId)
    {
        foreach (var key in _ranks.Keys.Where(k => k.Trial == trialId).ToList()) _ranks.TryRemove(key, out _);
    }

    /// <summary>Detaches only the ranks of the assignment with this token (a newer assignment of the same trial stays).</summary>
    public void Detach(string trialId, long token)
    {
        foreach (var (key, lease) in _ranks.Where(kv => kv.Key.Trial == trialId && kv.Value.Token == token).ToList())
            _ranks.TryRemove(new KeyValuePair<(string, int), RankLease>(key, lease));
    }

    /// <summary>Detaches one rank of the assignment with this token: that rank ended, its GPUs are free.</summary>
    public void Detach(string trialId, long token, int rank)
    {
        if (_ranks.TryGetValue((trialId, rank), out var lease) && lease.Token == token)
            _ranks.TryRemove(new KeyValuePair<(string, int), RankLease>((trialId, rank), lease));
    }

    public void Close() => _outbox.Writer.TryComplete();
}

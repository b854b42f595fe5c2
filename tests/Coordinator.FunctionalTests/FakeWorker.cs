using System.Collections.Concurrent;
using System.Threading.Channels;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Orchestrator.Protocol.V1;
using Orchestrator.TestSupport;

namespace Orchestrator.Coordinator.FunctionalTests;

/// <summary>
/// A worker without training: one WorkerGateway.Connect stream, Hello then heartbeats for the
/// leases it holds, and whatever the test makes it send. Everything the coordinator sends is
/// queued for the test to read in order.
/// </summary>
public sealed class FakeWorker : IAsyncDisposable
{
    private readonly AsyncDuplexStreamingCall<WorkerMessage, CoordinatorMessage> _call;
    private readonly Channel<CoordinatorMessage> _inbox = Channel.CreateUnbounded<CoordinatorMessage>();
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentDictionary<string, long> _leases = new(StringComparer.Ordinal);
    private Task _reader = Task.CompletedTask;
    private Task _heartbeats = Task.CompletedTask;
    private volatile bool _heartbeating;
    private volatile bool _draining;
    private bool _closed;

    private FakeWorker(string id, AsyncDuplexStreamingCall<WorkerMessage, CoordinatorMessage> call)
    {
        Id = id;
        _call = call;
    }

    public string Id { get; }

    /// <summary>
    /// Opens a worker stream on <paramref name="channel"/> (with <paramref name="headers"/>), says Hello
    /// as <paramref name="id"/> and returns the coordinator's first answer; a refusal is thrown.
    /// </summary>
    public static async Task<CoordinatorMessage> HelloAsync(global::Grpc.Net.Client.GrpcChannel channel, string id, Metadata? headers = null)
    {
        using var stream = new WorkerGateway.WorkerGatewayClient(channel).Connect(headers);
        try
        {
            await stream.RequestStream.WriteAsync(new WorkerMessage { Hello = new Hello { WorkerId = id, Name = id } }).DefaultTimeout();
        }
        catch (RpcException)
        {
            // The refusal may arrive before the Hello is written: the read below throws it.
        }
        Assert.True(await stream.ResponseStream.MoveNext(CancellationToken.None).DefaultTimeout());
        return stream.ResponseStream.Current;
    }

    /// <summary>The coordinator's answer to Hello.</summary>
    public Welcome Welcome { get; private set; } = new();

    /// <summary>The leases this worker holds (assigned and not stopped, completed or failed).</summary>
    public IReadOnlyDictionary<string, long> Leases => _leases;

    /// <summary>Capabilities of a worker that offers <paramref name="gpus"/> fake GPUs (none: a CPU worker).</summary>
    public static WorkerCapabilities Offering(int gpus, string name = "Fake GPU", long memoryBytes = 80_000_000_000)
    {
        var c = new WorkerCapabilities { Device = gpus > 0 ? "cuda" : "cpu", Gpus = gpus, CpuCores = 1, Host = "test", Version = "test" };
        c.Devices.AddRange(Enumerable.Range(0, gpus).Select(i => new WorkerDevice { Kind = "cuda", Index = i, Name = name, MemoryBytes = memoryBytes }));
        return c;
    }

    public static async Task<FakeWorker> ConnectAsync(TestCoordinator coordinator, string id, IEnumerable<TrialLease>? running, bool heartbeat, WorkerCapabilities? capabilities = null)
    {
        var call = coordinator.Gateway().Connect();
        var worker = new FakeWorker(id, call);
        var hello = new Hello
        {
            WorkerId = id,
            Name = id,
            Capabilities = capabilities ?? Offering(0),
            // Gangs need one; fake workers never form a ring, so nothing listens there.
            DataEndpoint = "127.0.0.1:9",
        };
        // With several GPUs, one endpoint per GPU (ports nobody listens on, as above).
        if (hello.Capabilities.Gpus > 1)
            hello.DeviceDataEndpoints.AddRange(Enumerable.Range(0, hello.Capabilities.Gpus).Select(i => $"127.0.0.1:{10 + i}"));
        foreach (var lease in running ?? [])
        {
            hello.Running.Add(lease);
            worker._leases[lease.TrialId] = lease.FencingToken;
        }
        await worker.SendAsync(new WorkerMessage { Hello = hello });
        if (!await call.ResponseStream.MoveNext(CancellationToken.None).DefaultTimeout())
            throw new InvalidOperationException($"{id}: the stream ended before Welcome");
        var first = call.ResponseStream.Current;
        if (first.KindCase != CoordinatorMessage.KindOneofCase.Welcome)
            throw new InvalidOperationException($"{id}: expected Welcome first, got {first}");
        worker.Welcome = first.Welcome;
        foreach (var stopped in first.Welcome.StopTrialIds) worker._leases.TryRemove(stopped, out _);
        worker._reader = worker.ReadLoopAsync();
        worker._heartbeating = heartbeat;
        worker._heartbeats = worker.HeartbeatLoopAsync();
        return worker;
    }

    private async Task ReadLoopAsync()
    {
        try
        {
            await foreach (var message in _call.ResponseStream.ReadAllAsync(_stop.Token))
            {
                switch (message.KindCase)
                {
                    case CoordinatorMessage.KindOneofCase.Assign:
                        _leases[message.Assign.Lease.TrialId] = message.Assign.Lease.FencingToken;
                        break;
                    case CoordinatorMessage.KindOneofCase.Stop:
                        _leases.TryRemove(message.Stop.TrialId, out _);
                        break;
                }
                _inbox.Writer.TryWrite(message);
            }
            _inbox.Writer.TryComplete();
        }
        catch (Exception e)
        {
            _inbox.Writer.TryComplete(e is OperationCanceledException || e is RpcException { StatusCode: StatusCode.Cancelled } ? null : e);
        }
    }

    private async Task HeartbeatLoopAsync()
    {
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                if (_heartbeating)
                {
                    var beat = new Heartbeat { Draining = _draining };
                    beat.Running.AddRange(_leases.Select(l => new TrialLease { TrialId = l.Key, FencingToken = l.Value }));
                    await SendAsync(new WorkerMessage { Heartbeat = beat });
                }
                await Task.Delay(TestCoordinator.HeartbeatInterval, _stop.Token);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or RpcException or InvalidOperationException or ObjectDisposedException)
        {
            // The stream closed.
        }
    }

    /// <summary>Says it is shutting down, as a worker does on SIGTERM: a heartbeat with draining set, now and from then on.</summary>
    public Task StartDrainingAsync()
    {
        _draining = true;
        var beat = new Heartbeat { Draining = true };
        beat.Running.AddRange(_leases.Select(l => new TrialLease { TrialId = l.Key, FencingToken = l.Value }));
        return SendAsync(new WorkerMessage { Heartbeat = beat });
    }

    /// <summary>Stops sending heartbeats (a hung worker) while the stream stays open.</summary>
    public void StopHeartbeats() => _heartbeating = false;

    public async Task SendAsync(WorkerMessage message)
    {
        await _writeLock.WaitAsync().DefaultTimeout();
        try
        {
            await _call.RequestStream.WriteAsync(message).DefaultTimeout();
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>The next message from the coordinator, whatever it is.</summary>
    public async Task<CoordinatorMessage> NextAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TaskTimeoutExtensions.Timeout);
        try
        {
            return await _inbox.Reader.ReadAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"{Id}: no message from the coordinator within {timeout ?? TaskTimeoutExtensions.Timeout}");
        }
        catch (ChannelClosedException)
        {
            throw new InvalidOperationException($"{Id}: the coordinator closed the stream");
        }
    }

    /// <summary>The next assignment; fails if something else comes first.</summary>
    public async Task<AssignTrial> NextAssignmentAsync(TimeSpan? timeout = null)
    {
        var message = await NextAsync(timeout);
        Assert.True(message.KindCase == CoordinatorMessage.KindOneofCase.Assign, $"{Id}: expected AssignTrial, got {message}");
        return message.Assign;
    }

    /// <summary>The next StopTrial; fails if something else comes first.</summary>
    public async Task<StopTrial> NextStopAsync(TimeSpan? timeout = null)
    {
        var message = await NextAsync(timeout);
        Assert.True(message.KindCase == CoordinatorMessage.KindOneofCase.Stop, $"{Id}: expected StopTrial, got {message}");
        return message.Stop;
    }

    /// <summary>
    /// Waits until the coordinator has handled everything this worker sent so far: messages on a
    /// stream are handled in order, and a report for a trial that does not exist is answered with
    /// StopTrial. Returns the messages that arrived before that answer.
    /// </summary>
    public async Task<IReadOnlyList<CoordinatorMessage>> SyncAsync()
    {
        var probe = new TrialLease { TrialId = "probe-" + Guid.NewGuid().ToString("N"), FencingToken = 1 };
        await ReportAsync(probe, step: 1, epoch: 1, valAccuracy: 0);
        var before = new List<CoordinatorMessage>();
        while (true)
        {
            var message = await NextAsync();
            if (message.KindCase == CoordinatorMessage.KindOneofCase.Stop && message.Stop.TrialId == probe.TrialId) return before;
            before.Add(message);
        }
    }

    /// <summary>Asserts that the coordinator sends nothing for <paramref name="quiet"/>.</summary>
    public async Task ExpectNothingAsync(TimeSpan quiet)
    {
        using var cts = new CancellationTokenSource(quiet);
        try
        {
            var message = await _inbox.Reader.ReadAsync(cts.Token);
            Assert.Fail($"{Id}: expected no message, got {message}");
        }
        catch (OperationCanceledException)
        {
        }
    }

    public Task ReportAsync(TrialLease lease, long step, int epoch, double valAccuracy, double valLoss = 1.0)
    {
        var point = new MetricPoint { TrialId = lease.TrialId, Step = step, Epoch = epoch, Time = Timestamp.FromDateTime(DateTime.UtcNow) };
        point.Values["val_accuracy"] = valAccuracy;
        point.Values["val_loss"] = valLoss;
        return SendAsync(new WorkerMessage { Metric = new MetricReport { Lease = lease.Clone(), Point = point } });
    }

    public Task StatusAsync(TrialLease lease, TrialStatus.Types.Outcome outcome, string message = "")
    {
        if (outcome is not TrialStatus.Types.Outcome.Started) _leases.TryRemove(lease.TrialId, out _);
        return SendAsync(new WorkerMessage { Status = new TrialStatus { Lease = lease.Clone(), Outcome = outcome, Message = message } });
    }

    /// <summary>Ends the stream from the worker's side (a worker process that died or lost its network).</summary>
    public async Task CloseAsync()
    {
        if (_closed) return;
        _closed = true;
        await _stop.CancelAsync();
        try { await _heartbeats.DefaultTimeout(); } catch (OperationCanceledException) { }
        try
        {
            await _writeLock.WaitAsync().DefaultTimeout();
            try { await _call.RequestStream.CompleteAsync().DefaultTimeout(); }
            finally { _writeLock.Release(); }
        }
        catch (Exception e) when (e is RpcException or InvalidOperationException)
        {
        }
        _call.Dispose();
        try { await _reader.DefaultTimeout(); } catch (OperationCanceledException) { }
    }

    public async ValueTask DisposeAsync()
    {
        await CloseAsync();
        _stop.Dispose();
    }
}

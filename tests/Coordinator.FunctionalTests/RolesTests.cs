using System.Diagnostics.Metrics;
using Grpc.Core;
using Orchestrator.Protocol.V1;
using Orchestrator.TestSupport;

namespace Orchestrator.Coordinator.FunctionalTests;

/// <summary>
/// Separate credentials for workers, users and viewers, over real gRPC: each token does what its
/// role allows and is refused the rest with PERMISSION_DENIED, and every refusal is counted.
/// </summary>
public sealed class RolesTests
{
    private const string Valid = """
        name: roles
        data: { name: synthetic }
        model: { name: simple-cnn }
        trial: { epochs: 1, batchSize: 32 }
        parameters:
          optimizer.lr: { values: [0.01, 0.02] }
        search: { method: grid }
        """;

    private static Metadata Bearer(string token) => new() { { "authorization", "Bearer " + token } };

    private static Task<TestCoordinator> StartAsync() => TestCoordinator.StartAsync(o =>
    {
        o.AuthToken = "admin";
        o.WorkerToken = "worker-secret";
        o.UserToken = "user-secret";
        o.ViewerToken = "viewer-secret";
    });

    private static async Task<RpcException> RefusedAsync(Func<Task> call)
    {
        var e = await Assert.ThrowsAsync<RpcException>(() => call().DefaultTimeout());
        Assert.Equal(StatusCode.PermissionDenied, e.StatusCode);
        return e;
    }

    [Fact]
    public async Task Each_role_does_what_it_may_and_is_refused_the_rest_with_a_reason_and_a_count()
    {
        long denied = 0;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == Metrics.CoordinatorMetrics.MeterName && instrument.Name == "orch_auth_refusals") l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
        {
            foreach (var tag in tags)
                if (tag is { Key: "reason", Value: "permission_denied" }) Interlocked.Add(ref denied, value);
        });
        listener.Start();

        await using var coordinator = await StartAsync();
        var sweeps = new Protocol.V1.Sweeps.SweepsClient(coordinator.Channel);

        // A user submits, steers and reads; it cannot act as a worker or join a gradient exchange.
        var sweep = await sweeps.SubmitSweepAsync(new SubmitSweepRequest { SpecYaml = Valid, FileName = "roles.yaml" }, Bearer("user-secret")).ResponseAsync.DefaultTimeout();
        await sweeps.PauseSweepAsync(new PauseSweepRequest { SweepId = sweep.Id }, Bearer("user-secret")).ResponseAsync.DefaultTimeout();
        Assert.Single((await sweeps.ListSweepsAsync(new ListSweepsRequest(), Bearer("user-secret")).ResponseAsync.DefaultTimeout()).Sweeps);
        var asWorker = await RefusedAsync(() => FakeWorker.HelloAsync(coordinator.Channel, "intruder", Bearer("user-secret")));
        Assert.Equal("a user token may not call WorkerGateway/Connect: it needs the worker role", asWorker.Status.Detail);
        await RefusedAsync(async () =>
        {
            using var exchange = new GradientExchange.GradientExchangeClient(coordinator.Channel).AllReduce(Bearer("user-secret"));
            await exchange.ResponseStream.MoveNext(CancellationToken.None);
        });

        // A viewer reads; it cannot change a sweep.
        var listed = await sweeps.ListTrialsAsync(new ListTrialsRequest { SweepId = sweep.Id }, Bearer("viewer-secret")).ResponseAsync.DefaultTimeout();
        Assert.Equal(2, listed.Trials.Count);
        var submit = await RefusedAsync(() => sweeps.SubmitSweepAsync(new SubmitSweepRequest { SpecYaml = Valid }, Bearer("viewer-secret")).ResponseAsync);
        Assert.Equal("a viewer token may not call Sweeps/SubmitSweep: it needs the user role", submit.Status.Detail);
        await RefusedAsync(() => sweeps.CancelSweepAsync(new CancelSweepRequest { SweepId = sweep.Id }, Bearer("viewer-secret")).ResponseAsync);

        // A worker runs trials; it can neither submit or cancel sweeps nor read them.
        Assert.NotNull((await FakeWorker.HelloAsync(coordinator.Channel, "w1", Bearer("worker-secret"))).Welcome);
        await RefusedAsync(() => sweeps.SubmitSweepAsync(new SubmitSweepRequest { SpecYaml = Valid }, Bearer("worker-secret")).ResponseAsync);
        await RefusedAsync(() => sweeps.CancelSweepAsync(new CancelSweepRequest { SweepId = sweep.Id }, Bearer("worker-secret")).ResponseAsync);
        await RefusedAsync(() => sweeps.ListSweepsAsync(new ListSweepsRequest(), Bearer("worker-secret")).ResponseAsync);

        // Nothing a refused call asked for happened: one sweep, still paused.
        var stored = Assert.Single(await coordinator.Store.ListSweepsAsync(CancellationToken.None).DefaultTimeout());
        Assert.Equal(Domain.SweepStatus.Paused, stored.State);
        listener.RecordObservableInstruments();
        Assert.Equal(7, Interlocked.Read(ref denied));
    }
}

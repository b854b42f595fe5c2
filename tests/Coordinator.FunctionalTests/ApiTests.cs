using System.Diagnostics;
using Grpc.Core;
using Orchestrator.Protocol.V1;
using Orchestrator.TestSupport;

namespace Orchestrator.Coordinator.FunctionalTests;

/// <summary>Bad input, missing credentials and oversized messages get a clear status, and the coordinator keeps serving.</summary>
public sealed class ApiTests
{
    private const string Valid = """
        name: ok
        data: { name: synthetic }
        model: { name: simple-cnn }
        parameters:
          optimizer.lr: { values: [0.01, 0.1] }
        search: { method: grid, maxTrials: 2 }
        """;

    /// <summary>Why, the file, and a pattern for "file:line:column: field: problem".</summary>
    public static TheoryData<string, string, string> Rejected => new()
    {
        {
            "unknown model",
            """
            name: bad-model
            data: { name: synthetic }
            model: { name: vgg16 }
            """,
            @"^sweep\.yaml:3:\d+: model\.name: .*vgg16"
        },
        {
            "too many workers",
            """
            name: big-gang
            data: { name: synthetic }
            model: { name: simple-cnn }
            resources: { workers: 8 }
            """,
            @"^sweep\.yaml:4:\d+: resources\.workers: .*\(4\)"
        },
        {
            "malformed yaml",
            """
            name: broken
            data: { name: synthetic
            model: { name: simple-cnn }
            """,
            @"^sweep\.yaml:[23]:\d+: "
        },
    };

    [Theory]
    [MemberData(nameof(Rejected))]
    public async Task An_invalid_sweep_is_rejected_with_INVALID_ARGUMENT_naming_the_line(string why, string yaml, string pattern)
    {
        await using var coordinator = await TestCoordinator.StartAsync(o => o.MaxWorkersPerTrial = 4);

        var e = await Assert.ThrowsAsync<RpcException>(() => coordinator.SubmitAsync(yaml));

        Assert.True(e.StatusCode == StatusCode.InvalidArgument, $"{why}: {e.Status}");
        Assert.Matches(pattern, e.Status.Detail);
        Assert.Empty((await coordinator.Sweeps.ListSweepsAsync(new ListSweepsRequest()).ResponseAsync.DefaultTimeout()).Sweeps);
    }

    [Fact]
    public async Task A_grid_of_a_billion_points_is_rejected_within_a_second()
    {
        await using var coordinator = await TestCoordinator.StartAsync();
        await coordinator.SubmitAsync(Valid); // warm the path up: the bound below is about the grid, not JIT
        var lines = string.Join("\n", Enumerable.Range(0, 9).Select(i =>
            $"  {new[] { "optimizer.lr", "optimizer.momentum", "optimizer.weightDecay", "model.dropout", "batchSize", "epochs", "data.limitTrain", "data.limitTest", "seed" }[i]}: {{ values: [{string.Join(", ", Enumerable.Range(1, 10).Select(v => Value(i, v)))}] }}"));
        var yaml = $"""
            name: huge
            data: {"{"} name: synthetic {"}"}
            model: {"{"} name: simple-cnn {"}"}
            parameters:
            {lines}
            search: {"{"} method: grid, maxTrials: 100000 {"}"}
            """;

        var watch = Stopwatch.StartNew();
        var e = await Assert.ThrowsAsync<RpcException>(() => coordinator.Sweeps.SubmitSweepAsync(new SubmitSweepRequest { SpecYaml = yaml, FileName = "sweep.yaml" }).ResponseAsync.WaitAsync(TimeSpan.FromSeconds(1)));
        watch.Stop();

        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("1,000,000,000", e.Status.Detail.Replace("\u202f", ",", StringComparison.Ordinal), StringComparison.Ordinal);
        Assert.Contains("sweep.yaml:", e.Status.Detail, StringComparison.Ordinal);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(1), $"took {watch.Elapsed}");
    }

    private static string Value(int parameter, int v) => parameter switch
    {
        0 => (v * 0.01).ToString("0.00", System.Globalization.CultureInfo.InvariantCulture),
        1 => (v * 0.05).ToString("0.00", System.Globalization.CultureInfo.InvariantCulture),
        2 => $"{v}.0e-5",
        3 => (v * 0.05).ToString("0.00", System.Globalization.CultureInfo.InvariantCulture),
        4 => (v * 16).ToString(System.Globalization.CultureInfo.InvariantCulture),
        5 => v.ToString(System.Globalization.CultureInfo.InvariantCulture),
        6 => (v * 100).ToString(System.Globalization.CultureInfo.InvariantCulture),
        7 => (v * 100).ToString(System.Globalization.CultureInfo.InvariantCulture),
        _ => v.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    [Fact]
    public async Task An_empty_spec_is_rejected_with_INVALID_ARGUMENT()
    {
        await using var coordinator = await TestCoordinator.StartAsync();

        var e = await Assert.ThrowsAsync<RpcException>(() => coordinator.SubmitAsync("  \n"));

        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("spec_yaml", e.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task With_a_token_configured_calls_without_the_bearer_header_are_UNAUTHENTICATED_and_calls_with_it_work()
    {
        await using var coordinator = await TestCoordinator.StartAsync(o => o.AuthToken = "s3cret");
        var anonymous = new Protocol.V1.Sweeps.SweepsClient(coordinator.Channel);
        var wrong = new Metadata { { "authorization", "Bearer nope" } };

        var none = await Assert.ThrowsAsync<RpcException>(() => anonymous.ListSweepsAsync(new ListSweepsRequest()).ResponseAsync.DefaultTimeout());
        var bad = await Assert.ThrowsAsync<RpcException>(() => anonymous.SubmitSweepAsync(new SubmitSweepRequest { SpecYaml = Valid }, wrong).ResponseAsync.DefaultTimeout());
        var gateway = new WorkerGateway.WorkerGatewayClient(coordinator.Channel);
        using var stream = gateway.Connect();
        // The refusal may arrive before the Hello is written: then the write fails with it.
        var worker = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            await stream.RequestStream.WriteAsync(new WorkerMessage { Hello = new Hello { WorkerId = "intruder" } }).DefaultTimeout();
            await stream.ResponseStream.MoveNext(CancellationToken.None).DefaultTimeout();
        });

        Assert.Equal(StatusCode.Unauthenticated, none.StatusCode);
        Assert.Equal(StatusCode.Unauthenticated, bad.StatusCode);
        Assert.Equal(StatusCode.Unauthenticated, worker.StatusCode);
        Assert.Empty(await coordinator.Store.ListSweepsAsync(CancellationToken.None).DefaultTimeout());

        // With the token (the test clients send it): the API and the worker stream work.
        var sweep = await coordinator.SubmitAsync(Valid);
        await using var fake = await coordinator.ConnectWorkerAsync("w1");
        var assign = await fake.NextAssignmentAsync();
        Assert.Equal(sweep.Id, assign.SweepId);
    }

    [Fact]
    public async Task A_request_larger_than_MaxMessageBytes_is_refused_with_RESOURCE_EXHAUSTED_and_the_coordinator_keeps_serving()
    {
        await using var coordinator = await TestCoordinator.StartAsync(o => o.MaxMessageBytes = 64 * 1024);
        var huge = Valid + "\n# " + new string('x', 200 * 1024) + "\n";

        var e = await Assert.ThrowsAsync<RpcException>(() => coordinator.SubmitAsync(huge));

        Assert.Equal(StatusCode.ResourceExhausted, e.StatusCode);
        var sweep = await coordinator.SubmitAsync(Valid);
        Assert.Equal(2, sweep.TrialsTotal);
        Assert.Single((await coordinator.Sweeps.ListSweepsAsync(new ListSweepsRequest()).ResponseAsync.DefaultTimeout()).Sweeps);
    }
}

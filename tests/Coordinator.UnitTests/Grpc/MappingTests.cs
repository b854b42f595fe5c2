using Grpc.Core;
using Orchestrator.Coordinator.Aggregation;
using Orchestrator.Coordinator.Domain;
using Orchestrator.Coordinator.Grpc;
using Orchestrator.Coordinator.Grpc.Gradients;
using Orchestrator.Coordinator.Workers;
using Proto = Orchestrator.Protocol.V1;

namespace Orchestrator.Coordinator.UnitTests.Grpc;

/// <summary>The edge's pure mappers: the domain's decisions and failures as protocol messages and statuses.</summary>
public sealed class MappingTests
{
    private static TrialAssignment Assignment(string aggregation = "ring", string wire = "fp32", IReadOnlyList<int>? gpus = null) =>
        new("sw-1-t0003", FencingToken: 4, Rank: 1, gpus ?? [])
        {
            SweepId = "sw-1",
            TrialYaml = "epochs: 2\n",
            WorldSize = 2,
            PeerEndpoints = ["a:1", "b:2"],
            Resume = true,
            Attempt = 2,
            Aggregation = aggregation,
            Wire = wire,
        };

    [Fact]
    public void An_assignment_carries_the_lease_placement_and_the_gang_but_no_gradient_socket_for_a_ring()
    {
        var message = Mapping.ToProto(Assignment(gpus: [3]), ":5002", "/tmp/orch.sock");

        Assert.Equal(("sw-1-t0003", 4L, 1), (message.Lease.TrialId, message.Lease.FencingToken, message.Lease.Rank));
        Assert.Equal([3], message.Lease.Gpus);
        Assert.Equal("cuda:3", message.Device);
        Assert.Equal(("sw-1", "epochs: 2\n", 1, 2, true, 2), (message.SweepId, message.TrialYaml, message.Rank, message.WorldSize, message.Resume, message.Attempt));
        Assert.Equal(["a:1", "b:2"], message.PeerEndpoints);
        Assert.Equal((Proto.AggregationMode.Ring, Proto.GradientWireFormat.Fp32), (message.Aggregation, message.Wire));
        Assert.Equal(("", ""), (message.GradientEndpoint, message.GradientSocketPath));
    }

    [Fact]
    public void A_coordinator_aggregated_assignment_names_the_gradient_socket_when_it_listens()
    {
        var listening = Mapping.ToProto(Assignment("coordinator", "bf16"), ":5002", "/tmp/orch.sock");
        var off = Mapping.ToProto(Assignment("coordinator"), null, null);

        Assert.Equal((Proto.AggregationMode.Coordinator, Proto.GradientWireFormat.Bf16), (listening.Aggregation, listening.Wire));
        Assert.Equal((":5002", "/tmp/orch.sock"), (listening.GradientEndpoint, listening.GradientSocketPath));
        Assert.Equal("cpu", off.Device);
        Assert.Equal(("", ""), (off.GradientEndpoint, off.GradientSocketPath));
        Assert.Throws<ArgumentOutOfRangeException>(() => Mapping.ToProto(Assignment("tree"), null, null));
    }

    [Fact]
    public void Worker_commands_map_to_the_stream_messages_of_their_kind()
    {
        var stop = Mapping.ToProto(new StopOrder("sw-1-t0000", "sweep cancelled"), null, null);
        var assign = Mapping.ToProto((WorkerCommand)Assignment(), null, null);

        Assert.Equal(Proto.CoordinatorMessage.KindOneofCase.Stop, stop.KindCase);
        Assert.Equal(("sw-1-t0000", "sweep cancelled"), (stop.Stop.TrialId, stop.Stop.Reason));
        Assert.Equal(Proto.CoordinatorMessage.KindOneofCase.Assign, assign.KindCase);
    }

    [Theory]
    [InlineData(Proto.TrialStatus.Types.Outcome.Started, TrialOutcome.Started)]
    [InlineData(Proto.TrialStatus.Types.Outcome.Completed, TrialOutcome.Completed)]
    [InlineData(Proto.TrialStatus.Types.Outcome.Failed, TrialOutcome.Failed)]
    [InlineData(Proto.TrialStatus.Types.Outcome.FailedPermanently, TrialOutcome.FailedPermanently)]
    [InlineData(Proto.TrialStatus.Types.Outcome.Stopped, TrialOutcome.Stopped)]
    [InlineData(Proto.TrialStatus.Types.Outcome.RankDone, TrialOutcome.RankDone)]
    [InlineData(Proto.TrialStatus.Types.Outcome.Drained, TrialOutcome.Drained)]
    public void Every_reported_outcome_has_its_domain_meaning(Proto.TrialStatus.Types.Outcome reported, TrialOutcome expected) =>
        Assert.Equal(expected, Mapping.FromProto(reported));

    [Fact]
    public void An_unspecified_outcome_is_ignored() =>
        Assert.Null(Mapping.FromProto(Proto.TrialStatus.Types.Outcome.Unspecified));

    [Fact]
    public void A_failed_step_ends_the_stream_ABORTED_naming_the_rank_and_kind_in_trailers_and_the_socket_frame_says_the_same()
    {
        var failure = AggregationFailure.Stalled("sw-1-t0000", rank: 2, TimeSpan.FromSeconds(10));

        var rpc = GradientMapping.ToRpcException(failure);
        var frame = GradientMapping.ToSocketFrame(failure);

        Assert.Equal(StatusCode.Aborted, rpc.StatusCode);
        Assert.Equal(failure.Message, rpc.Status.Detail);
        Assert.Equal("2", rpc.Trailers.GetValue(Proto.GradientExchange.FailedRankTrailer));
        Assert.Equal("timeout", rpc.Trailers.GetValue(Proto.GradientExchange.FailureTrailer));
        var socket = Proto.GradientSocketFailure.Parser.ParseFrom(frame.AsSpan(Protocol.GradientSocketFrames.FrameHeaderBytes));
        Assert.Equal(((int)StatusCode.Aborted, failure.Message, 2, "timeout"), (socket.StatusCode, socket.Message, socket.FailedRank, socket.Kind));
    }

    [Theory]
    [InlineData(AggregationFailureKind.Stale, StatusCode.FailedPrecondition)]
    [InlineData(AggregationFailureKind.AttemptOver, StatusCode.FailedPrecondition)]
    [InlineData(AggregationFailureKind.Invalid, StatusCode.InvalidArgument)]
    [InlineData(AggregationFailureKind.RankTaken, StatusCode.AlreadyExists)]
    [InlineData(AggregationFailureKind.Unauthenticated, StatusCode.Unauthenticated)]
    [InlineData(AggregationFailureKind.Unavailable, StatusCode.Unavailable)]
    [InlineData(AggregationFailureKind.Superseded, StatusCode.Aborted)]
    public void Refusals_map_to_their_status_without_blaming_a_rank(AggregationFailureKind kind, StatusCode expected)
    {
        var rpc = GradientMapping.ToRpcException(new AggregationFailure(kind, "why"));

        Assert.Equal((expected, "why"), (rpc.StatusCode, rpc.Status.Detail));
        Assert.Null(rpc.Trailers.GetValue(Proto.GradientExchange.FailedRankTrailer));
    }

    [Fact]
    public void A_log_line_keeps_its_seq_time_and_text_and_a_line_without_time_takes_the_arrival_time()
    {
        var time = new DateTimeOffset(2025, 3, 1, 12, 0, 1, TimeSpan.Zero).AddTicks(1234);
        var proto = Mapping.ToProto(new TrialLogLine { Seq = 42, Time = time, Text = "epoch 1/2" });
        Assert.Equal((42L, time, "epoch 1/2"), (proto.Seq, proto.Time.ToDateTimeOffset(), proto.Text));

        var back = Mapping.FromProto(proto, DateTimeOffset.UnixEpoch);
        // The worker's seq means nothing: the store numbers lines.
        Assert.Equal((0L, time, "epoch 1/2"), (back.Seq, back.Time, back.Text));
        Assert.Equal(DateTimeOffset.UnixEpoch, Mapping.FromProto(new Proto.TrialLogLine { Text = "x" }, DateTimeOffset.UnixEpoch).Time);
    }

    [Fact]
    public void A_trial_carries_the_epoch_of_its_best_metric()
    {
        var trial = new TrialRecord { Id = "sw-1-t0000", SweepId = "sw-1", BestMetric = 0.8, BestEpoch = 3, Epoch = 5 };
        var proto = Mapping.ToProto(trial, null);
        Assert.Equal((0.8, 3, 5), (proto.BestMetric, proto.BestEpoch, proto.Epoch));
    }
}

using System.Runtime.InteropServices;
using Microsoft.Extensions.Time.Testing;
using Orchestrator.Coordinator.Aggregation;

namespace Orchestrator.Coordinator.UnitTests.Aggregation;

/// <summary>
/// One trial's gradient session on its own: no transport, no server. Its failures are typed; the
/// stall watchdog runs on a fake clock.
/// </summary>
public sealed class AggregationSessionTests
{
    private static readonly GradientAggregationOptions Options = new() { StallTimeout = TimeSpan.FromSeconds(10), JoinTimeout = TimeSpan.FromSeconds(30) };

    private static GradientStreamSpec Rank(int rank, int world = 2, int chunkFloats = 4) =>
        new("sw-1-t0000", FencingToken: 1, rank, world, MaxBufferFloats: 0, chunkFloats, Bf16: false);

    private static GradientPart Part(params float[] values) => new(MemoryMarshal.AsBytes(values.AsSpan()).ToArray(), null);

    private static AggregationSession Open(TimeProvider clock, out RankPort[] ports, int world = 2)
    {
        var session = new AggregationSession(Rank(0, world), maxBufferFloats: 1024, Options, clock);
        ports = [.. Enumerable.Range(0, world).Select(r => session.Join(Rank(r, world)))];
        return session;
    }

    [Fact]
    public void Every_rank_gets_the_mean_of_a_chunk_once_all_ranks_sent_it()
    {
        var session = Open(new FakeTimeProvider(), out var ports);

        session.Receive(0, step: 0, index: 0, stepFloats: 4, Part(1, 2, 3, 4));
        session.Receive(1, step: 0, index: 0, stepFloats: 4, Part(3, 4, 5, 6));

        foreach (var port in ports)
        {
            Assert.True(port.Outbox.Reader.TryRead(out var joined));
            Assert.Equal(port.Rank, joined.Joined!.Rank);
            Assert.True(port.Outbox.Reader.TryRead(out var mean));
            Assert.Equal([2f, 3f, 4f, 5f], MemoryMarshal.Cast<byte, float>(mean.Buffer!.Means.Span).ToArray());
            mean.Buffer.Release();
        }
        Assert.Null(session.Failure);
    }

    [Fact]
    public void A_rank_that_disagrees_about_the_step_fails_it_for_every_rank_with_a_mismatch_naming_it()
    {
        var session = Open(new FakeTimeProvider(), out var ports);
        session.Receive(0, step: 0, index: 0, stepFloats: 4, Part(1, 2, 3, 4));

        var thrown = Assert.Throws<AggregationException>(() => session.Receive(1, step: 0, index: 0, stepFloats: 8, Part(1, 2, 3, 4)));

        Assert.Equal((AggregationFailureKind.Mismatch, 1), (thrown.Failure.Kind, thrown.Failure.FailedRank));
        Assert.Contains("reduces 8 floats at step 0 where another rank reduces 4", thrown.Failure.Message, StringComparison.Ordinal);
        Assert.Same(thrown.Failure, session.Failure);
        Assert.True(session.Ended.IsCancellationRequested);
        // Every rank's outbox ends with the same failure, and the attempt admits no one.
        foreach (var port in ports)
        {
            while (port.Outbox.Reader.TryRead(out _)) { }
            Assert.Same(thrown.Failure, Assert.IsType<AggregationException>(port.Outbox.Reader.Completion.Exception!.InnerException).Failure);
        }
        var late = Assert.Throws<AggregationException>(() => session.Join(Rank(1)));
        Assert.Equal(AggregationFailureKind.AttemptOver, late.Failure.Kind);
    }

    [Fact]
    public void A_second_stream_for_a_rank_or_a_header_that_disagrees_is_refused_without_failing_the_session()
    {
        var session = new AggregationSession(Rank(0), maxBufferFloats: 1024, Options, new FakeTimeProvider());
        session.Join(Rank(0));

        Assert.Equal(AggregationFailureKind.RankTaken, Assert.Throws<AggregationException>(() => session.Join(Rank(0))).Failure.Kind);
        Assert.Equal(AggregationFailureKind.Invalid, Assert.Throws<AggregationException>(() => session.Join(Rank(1, chunkFloats: 8))).Failure.Kind);
        Assert.Null(session.Failure);
    }

    [Fact]
    public async Task A_rank_the_others_wait_for_past_the_stall_timeout_fails_the_step_as_a_timeout_naming_it()
    {
        var clock = new FakeTimeProvider();
        var session = Open(clock, out _);
        session.Receive(0, step: 0, index: 0, stepFloats: 8, Part(1, 2, 3, 4));

        // Half a second at a time until the watchdog fails the step: never before the timeout.
        var waited = TimeSpan.Zero;
        while (session.Failure is null && waited < TimeSpan.FromMinutes(1))
        {
            clock.Advance(TimeSpan.FromMilliseconds(500));
            waited += TimeSpan.FromMilliseconds(500);
            await Task.Yield();
        }

        Assert.InRange(waited, Options.StallTimeout, TimeSpan.FromSeconds(59));
        Assert.Equal((AggregationFailureKind.Timeout, 1), (session.Failure!.Kind, session.Failure.FailedRank));
        Assert.Contains("rank 1 sent nothing for 10 s", session.Failure.Message, StringComparison.Ordinal);
    }
}

using System.Buffers;
using System.Buffers.Binary;
using System.Net.Sockets;
using Orchestrator.Coordinator.Aggregation;
using Orchestrator.Protocol;

namespace Orchestrator.Coordinator.Grpc.Gradients;

// The data planes of a connection: steps read from the socket (TCP, Unix) or from shared memory, and the one writer of means.
public sealed partial class GradientSocketServer
{
    /// <summary>Feeds the rank's steps to the session until the rank closes its half or anything fails.</summary>
    private static async Task ReadLoopAsync(Stream socket, AggregationSession session, RankPort port, GradientExchangeMetrics metrics, string plane, CancellationToken ct)
    {
        var header = new byte[GradientSocketFrames.StepHeaderBytes];
        var chunkFloats = session.ChunkFloats;
        try
        {
            while (true)
            {
                if (!await SocketIo.TryReceiveExactlyAsync(socket, header, ct).ConfigureAwait(false))
                {
                    session.Depart(port, clean: true);
                    return;
                }
                var type = BinaryPrimitives.ReadUInt32LittleEndian(header);
                var step = BinaryPrimitives.ReadInt64LittleEndian(header.AsSpan(8));
                var floats = BinaryPrimitives.ReadInt64LittleEndian(header.AsSpan(16));
                if (type != GradientSocketFrames.Step)
                {
                    session.Fail(AggregationFailure.Mismatch(session.TrialId, port.Rank, $"sent frame type {type} where a step header was due"));
                    return;
                }
                session.CheckStep(port.Rank, step, floats);
                var chunks = (int)((floats + chunkFloats - 1) / chunkFloats);
                for (var index = 0; index < chunks; index++)
                {
                    var bytes = (int)Math.Min(chunkFloats, floats - (long)index * chunkFloats) * session.ValueBytes;
                    var array = ArrayPool<byte>.Shared.Rent(bytes);
                    await SocketIo.ReceiveExactlyAsync(socket, array.AsMemory(0, bytes), ct).ConfigureAwait(false);
                    session.Receive(port.Rank, step, index, floats, new GradientPart(array.AsMemory(0, bytes), array));
                    metrics.Received(plane, bytes);
                }
            }
        }
        catch (AggregationException) when (session.Failure is not null)
        {
            // The session failed (this rank broke the protocol, or another rank failed it).
        }
        catch (Exception)
        {
            // The rank went away (reset, closed mid-step, cancelled): mid-step that fails the trial.
            session.Depart(port, clean: false);
        }
    }

    /// <summary>
    /// Feeds a shared-memory rank's steps to the session: per step a Step frame (making a larger
    /// segment first when the step needs one), then one Ready frame per chunk, whose values the
    /// session sums straight from the segment.
    /// </summary>
    private static async Task ReadSharedLoopAsync(Connection connection, AggregationSession session, RankPort port, GradientExchangeMetrics metrics, CancellationToken ct)
    {
        var socket = connection.Stream;
        var frame = new byte[GradientSocketFrames.StepHeaderBytes];
        var chunkFloats = session.ChunkFloats;
        var unlinked = true;
        try
        {
            while (true)
            {
                if (!await SocketIo.TryReceiveExactlyAsync(socket, frame, ct).ConfigureAwait(false))
                {
                    session.Depart(port, clean: true);
                    return;
                }
                var (type, _, step, floats) = ReadRankFrame(frame);
                if (type != GradientSocketFrames.Step)
                {
                    session.Fail(AggregationFailure.Mismatch(session.TrialId, port.Rank, $"sent frame type {type} where a step header was due"));
                    return;
                }
                session.CheckStep(port.Rank, step, floats);
                var bytes = floats * sizeof(float);
                if (bytes > connection.Capacity)
                {
                    if (2 * bytes > int.MaxValue)
                    {
                        session.Fail(AggregationFailure.Mismatch(session.TrialId, port.Rank, $"sent a step of {floats} floats, more than shared memory carries (use the socket)"));
                        return;
                    }
                    var segment = SharedMemorySegment.Create(2 * bytes);
                    if (connection.Segment is { } old) session.DisposeWhenIdle(old);
                    connection.Segment = segment;
                    connection.Capacity = bytes;
                    unlinked = false;
                    // The writer tells the rank (before any mean of this step) and writes means there from now on.
                    port.Outbox.Writer.TryWrite(new Outgoing(null, step, 0, 0, null) { Segment = segment });
                }
                var memory = connection.Segment!.Memory;
                var chunks = (int)((floats + chunkFloats - 1) / chunkFloats);
                for (var index = 0; index < chunks; index++)
                {
                    await SocketIo.ReceiveExactlyAsync(socket, frame, ct).ConfigureAwait(false);
                    var (readyType, readyIndex, readyStep, readyFloats) = ReadRankFrame(frame);
                    if (readyType != GradientSocketFrames.Ready || readyIndex != (uint)index || readyStep != step || readyFloats != floats)
                    {
                        session.Fail(AggregationFailure.Mismatch(session.TrialId, port.Rank,
                            $"sent frame type {readyType} for chunk {readyIndex} of step {readyStep} where chunk {index} of step {step} was due"));
                        return;
                    }
                    if (!unlinked)
                    {
                        // The rank has it mapped: no name needs to outlive the two processes.
                        connection.Segment.Unlink();
                        unlinked = true;
                    }
                    var length = (int)Math.Min(chunkFloats, floats - (long)index * chunkFloats) * sizeof(float);
                    session.Receive(port.Rank, step, index, floats, new GradientPart(memory.Slice(index * chunkFloats * sizeof(float), length), null));
                    metrics.Received("shm", length);
                }
            }
        }
        catch (AggregationException) when (session.Failure is not null)
        {
            // The session failed (this rank broke the protocol, or another rank failed it).
        }
        catch (Exception)
        {
            session.Depart(port, clean: false);
        }
        finally
        {
            if (!unlinked) connection.Segment?.Unlink();
        }
    }

    private static (uint Type, uint Argument, long Step, long Floats) ReadRankFrame(ReadOnlySpan<byte> frame) =>
        (BinaryPrimitives.ReadUInt32LittleEndian(frame), BinaryPrimitives.ReadUInt32LittleEndian(frame[4..]),
         BinaryPrimitives.ReadInt64LittleEndian(frame[8..]), BinaryPrimitives.ReadInt64LittleEndian(frame[16..]));

    /// <summary>The one writer of the rank's connection: drains its outbox in order.</summary>
    private static async Task WriteLoopAsync(Connection connection, AggregationSession session, RankPort port, CancellationToken ct)
    {
        var socket = connection.Stream;
        var outbox = port.Outbox.Reader;
        var joined = new byte[GradientSocketFrames.FrameHeaderBytes];
        GradientSocketFrames.WriteFrame(joined, GradientSocketFrames.Joined, connection.Shared ? 1u : 0u, 0);
        SharedMemorySegment? segment = null;
        try
        {
            while (await outbox.WaitToReadAsync(ct).ConfigureAwait(false))
            {
                while (outbox.TryRead(out var item))
                {
                    try
                    {
                        if (item.Segment is { } next)
                        {
                            segment = next;
                            await SocketIo.SendAllAsync(socket, SegmentFrame(next), ct).ConfigureAwait(false);
                        }
                        else if (item.Joined is not null)
                        {
                            await SocketIo.SendAllAsync(socket, joined, ct).ConfigureAwait(false);
                        }
                        else if (segment is not null)
                        {
                            // Shared memory: the means go into the rank's half, the socket says where.
                            var frame = item.Buffer!.Frame;
                            var means = frame[GradientSocketFrames.FrameHeaderBytes..];
                            var offset = segment.Length / 2 + item.Index * session.ChunkFloats * sizeof(float);
                            means.Span.CopyTo(segment.GetSpan().Slice(offset, means.Length));
                            await SocketIo.SendAllAsync(socket, frame[..GradientSocketFrames.FrameHeaderBytes], ct).ConfigureAwait(false);
                        }
                        else
                        {
                            await SocketIo.SendAllAsync(socket, item.Buffer!.Frame, ct).ConfigureAwait(false);
                        }
                    }
                    finally
                    {
                        item.Buffer?.Release();
                    }
                }
            }
        }
        catch (Exception) when (session.Failure is not null)
        {
            // Failed elsewhere; the connection ends with that failure.
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or SocketException or ObjectDisposedException)
        {
            // The rank's connection went away while we wrote to it.
            session.Depart(port, clean: false);
        }
        finally
        {
            // Chunks never written still hold a share of their pooled buffer.
            while (outbox.TryRead(out var left)) left.Buffer?.Release();
        }
    }

    private static byte[] SegmentFrame(SharedMemorySegment segment)
    {
        var path = System.Text.Encoding.UTF8.GetBytes(segment.Path);
        var frame = new byte[GradientSocketFrames.FrameHeaderBytes + path.Length];
        GradientSocketFrames.WriteFrame(frame, GradientSocketFrames.Segment, (uint)path.Length, segment.Length);
        path.CopyTo(frame, GradientSocketFrames.FrameHeaderBytes);
        return frame;
    }
}

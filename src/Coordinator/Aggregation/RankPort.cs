using System.Buffers;
using System.Threading.Channels;
using Orchestrator.Protocol;

namespace Orchestrator.Coordinator.Aggregation;

/// <summary>One rank's stream in a session: its outbox, drained by the one writer loop of its call.</summary>
internal sealed class RankPort(int rank)
{
    public int Rank { get; } = rank;

    /// <summary>
    /// Unbounded on purpose: at most one step is in flight, so it never holds more than one
    /// buffer's worth of chunks, and a reducer must never block on a slow rank's writer.
    /// </summary>
    public Channel<Outgoing> Outbox { get; } = Channel.CreateUnbounded<Outgoing>(new UnboundedChannelOptions { SingleReader = true });

    /// <summary>Closed its stream cleanly between steps.</summary>
    public bool Departed { get; set; }
}

/// <summary>
/// What one rank is sent next: the echoed header once everyone joined (<paramref name="Joined"/>),
/// or the mean of chunk <paramref name="Index"/> of step <paramref name="Step"/>, in a shared
/// buffer to release once it is written.
/// </summary>
internal readonly record struct Outgoing(GradientStreamSpec? Joined, long Step, int Index, long StepFloats, ReducedChunk? Buffer)
{
    /// <summary>A control item of the gradient socket's shared-memory mode: switch to this segment and tell the rank.</summary>
    public SharedMemorySegment? Segment { get; init; }
}

/// <summary>One rank's chunk as received: its bytes, and the pooled array holding them (null when not pooled).</summary>
internal readonly record struct GradientPart(ReadOnlyMemory<byte> Data, byte[]? Pooled);

/// <summary>
/// A reduced chunk in a pooled array, after room for the socket frame header, shared by the W
/// writes of it. Released by count rather than with <c>using</c>: the last of W concurrent
/// writers returns it.
/// </summary>
internal sealed class ReducedChunk(byte[] array, int length, int readers)
{
    private int _readers = readers;

    /// <summary>The means (without the frame header); valid until the last <see cref="Release"/>.</summary>
    public ReadOnlyMemory<byte> Means => array.AsMemory(GradientSocketFrames.FrameHeaderBytes, length);

    /// <summary>The whole socket frame: header and means.</summary>
    public ReadOnlyMemory<byte> Frame => array.AsMemory(0, GradientSocketFrames.FrameHeaderBytes + length);

    public void Release()
    {
        if (Interlocked.Decrement(ref _readers) == 0) ArrayPool<byte>.Shared.Return(array);
    }
}

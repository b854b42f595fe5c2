using System.Buffers;
using System.Runtime.InteropServices;
using Orchestrator.Protocol;

namespace Orchestrator.Coordinator.Aggregation;

// The reduction of a chunk whose last part arrived, outside the session's lock.
internal sealed partial class AggregationSession
{
    /// <summary>
    /// Sums the parts in rank order into a pooled buffer, divides once by W, and queues the bytes to
    /// every rank. The buffer goes back to the pool after the last rank's write.
    /// </summary>
    private void Reduce(ReadOnlySpan<GradientPart> parts, long step, int index, long stepFloats)
    {
        var bytes = parts[0].Data.Length;
        var array = ArrayPool<byte>.Shared.Rent(GradientSocketFrames.FrameHeaderBytes + bytes);
        var destination = array.AsSpan(GradientSocketFrames.FrameHeaderBytes, bytes);
        if (Bf16) MeanKernel.MeanBf16(parts, MemoryMarshal.Cast<byte, ushort>(destination));
        else MeanKernel.Mean(parts, MemoryMarshal.Cast<byte, float>(destination));
        // The socket frame's header, written once for every rank that reads the gradient socket.
        GradientSocketFrames.WriteFrame(array, GradientSocketFrames.Mean, (uint)index, step);
        var reduced = new ReducedChunk(array, bytes, WorldSize);
        foreach (var port in _ranks)
        {
            if (!port!.Outbox.Writer.TryWrite(new Outgoing(null, step, index, stepFloats, reduced))) reduced.Release();
        }
    }
}

using System.Buffers.Binary;
using System.Globalization;
using Google.Protobuf;
using Grpc.Core;
using Orchestrator.Protocol.V1;

namespace Orchestrator.Protocol;

/// <summary>
/// Framing of the coordinator's gradient socket (docs/data-parallel.md, "The gradient socket"):
/// the same exchange as the GradientExchange stream, on a plain TCP connection. All integers are
/// little-endian.
/// </summary>
/// <remarks>
/// <para>Rank → coordinator: <c>magic u32 · length u32 · GradientSocketHello</c> once, then
/// <see cref="StepHeaderBytes"/>-byte frames (<c>type u32 · argument u32 · step i64 · floats
/// i64</c>): per step a <see cref="Step"/> frame followed by the whole buffer as fp32 (the
/// coordinator cuts it into the header's <c>chunk_floats</c>). Closing the sending half between
/// steps leaves cleanly.</para>
/// <para>Coordinator → rank: frames of a <see cref="FrameHeaderBytes"/>-byte header (<c>type u32 ·
/// argument u32 · step i64</c>): <see cref="Joined"/> once every rank is in (argument 1 when
/// shared memory is granted), then one <see cref="Mean"/> per chunk (argument: the chunk index;
/// the chunk's fp32 means follow, their length fixed by the step and chunk size), or one
/// <see cref="Failed"/> (argument: the length of the GradientSocketFailure that follows) before
/// the coordinator closes the connection.</para>
/// <para>Shared-memory mode (a rank on the coordinator's machine): no gradient bytes on the
/// socket. The coordinator maps a segment of 2·B bytes per connection: the rank's values in
/// [0, B), the means in [B, 2B). When a step needs more than B bytes the coordinator sends
/// <see cref="Segment"/> (argument: path length; step field: the segment's length; the UTF-8 path
/// follows) before anything else of that step, and the rank maps it. The rank copies chunk k into
/// its half and sends <see cref="Ready"/> (argument k); the coordinator writes the mean of chunk k
/// into the other half and sends <see cref="Mean"/> without payload.</para>
/// </remarks>
public static class GradientSocketFrames
{
    /// <summary>"OGS1": Orchestrator gradient socket, version 1 (as bytes on the wire).</summary>
    public const uint Magic = 0x3153_474F;

    /// <summary>Largest hello accepted (a trial id, a token and a few numbers need far less).</summary>
    public const int MaxHelloBytes = 16 * 1024;

    /// <summary>Bytes before the hello: magic and hello length.</summary>
    public const int PreambleBytes = 8;

    /// <summary>Bytes of a rank's step header.</summary>
    public const int StepHeaderBytes = 24;

    /// <summary>Bytes of a coordinator frame header.</summary>
    public const int FrameHeaderBytes = 16;

    /// <summary>Rank frame types.</summary>
    public const uint Step = 1, Ready = 2;

    /// <summary>Coordinator frame types.</summary>
    public const uint Joined = 1, Mean = 2, Failed = 3, Segment = 4;

    /// <summary>Writes the preamble and hello into a new array, ready to send.</summary>
    public static byte[] Hello(GradientSocketHello hello)
    {
        ArgumentNullException.ThrowIfNull(hello);
        var size = hello.CalculateSize();
        var bytes = new byte[PreambleBytes + size];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, Magic);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(4), size);
        hello.WriteTo(bytes.AsSpan(PreambleBytes));
        return bytes;
    }

    /// <summary>A rank's frame: <see cref="Step"/> (argument 0) or <see cref="Ready"/> (argument: the chunk).</summary>
    public static void WriteStep(Span<byte> destination, long step, long floats, uint type = Step, uint argument = 0)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(destination, type);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[4..], argument);
        BinaryPrimitives.WriteInt64LittleEndian(destination[8..], step);
        BinaryPrimitives.WriteInt64LittleEndian(destination[16..], floats);
    }

    /// <summary>A coordinator frame header.</summary>
    public static void WriteFrame(Span<byte> destination, uint type, uint argument, long step)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(destination, type);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[4..], argument);
        BinaryPrimitives.WriteInt64LittleEndian(destination[8..], step);
    }

    /// <summary>Reads a coordinator frame header.</summary>
    public static (uint Type, uint Argument, long Step) ReadFrame(ReadOnlySpan<byte> source) =>
        (BinaryPrimitives.ReadUInt32LittleEndian(source), BinaryPrimitives.ReadUInt32LittleEndian(source[4..]), BinaryPrimitives.ReadInt64LittleEndian(source[8..]));

    /// <summary>A whole failure frame (header and message) for <paramref name="failure"/>.</summary>
    public static byte[] Failure(RpcException failure)
    {
        ArgumentNullException.ThrowIfNull(failure);
        var rank = int.TryParse(failure.Trailers.GetValue(GradientExchange.FailedRankTrailer), NumberStyles.None, CultureInfo.InvariantCulture, out var r) ? r : -1;
        var message = new GradientSocketFailure
        {
            StatusCode = (int)failure.StatusCode,
            Message = failure.Status.Detail ?? "",
            FailedRank = rank,
            Kind = failure.Trailers.GetValue(GradientExchange.FailureTrailer) ?? "",
        };
        var size = message.CalculateSize();
        var bytes = new byte[FrameHeaderBytes + size];
        WriteFrame(bytes, Failed, (uint)size, 0);
        message.WriteTo(bytes.AsSpan(FrameHeaderBytes));
        return bytes;
    }

    /// <summary>The failure as the gRPC stream would have ended: the same status and trailers.</summary>
    public static RpcException ToRpcException(GradientSocketFailure failure)
    {
        ArgumentNullException.ThrowIfNull(failure);
        var trailers = new Metadata();
        if (failure.FailedRank >= 0) trailers.Add(GradientExchange.FailedRankTrailer, failure.FailedRank.ToString(CultureInfo.InvariantCulture));
        if (failure.Kind.Length > 0) trailers.Add(GradientExchange.FailureTrailer, failure.Kind);
        return new RpcException(new Status((StatusCode)failure.StatusCode, failure.Message), trailers);
    }
}

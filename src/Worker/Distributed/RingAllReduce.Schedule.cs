using System.Buffers.Binary;
using Orchestrator.Numerics;
using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Orchestrator.Worker.Distributed;

// The ring schedule. Phases 0..W−2 reduce-scatter, phases W−1..2W−3 all-gather. In phase p a rank
// sends one segment to rank+1 and receives another from rank−1; the segment it sends in phase p+1
// is the one it received in phase p, so chunk c may leave as soon as chunk c has arrived (and been
// folded in): the receiver releases `_forwardable` once per such chunk and the sender takes it.
public sealed partial class RingAllReduce
{
    private void SendAll<TOp>(Span<float> data) where TOp : struct, IReduceOp
    {
        var socket = _next!;
        var header = _sendHeader.AsSpan();
        WireProtocol.WriteCallHeader(header, _sequence, data.Length);
        SendExactly(socket, header);

        int world = WorldSize, phases = 2 * (world - 1);
        var bf16 = _options.Wire == WireFormat.Bf16;
        var staging = bf16 ? MemoryMarshal.Cast<byte, ushort>(_sendStaging!.Memory.Span) : default;
        for (var phase = 0; phase < phases; phase++)
        {
            var segment = phase < world - 1 ? Mod(Rank - phase, world) : Mod(Rank + 1 - (phase - (world - 1)), world);
            var (start, length) = SegmentBounds(data.Length, world, segment);
            for (var offset = 0; offset < length; offset += _chunkElements)
            {
                var count = Math.Min(_chunkElements, length - offset);
                if (phase > 0) _forwardable.Wait(_abort.Token);
                var chunk = data.Slice(start + offset, count);
                if (bf16)
                {
                    BFloat16Codec.Narrow(chunk, staging);
                    SendExactly(socket, MemoryMarshal.AsBytes(staging[..count]));
                }
                else
                {
                    SendExactly(socket, MemoryMarshal.AsBytes(chunk));
                }
            }
        }
    }

    private void ReceiveAll<TOp>(Span<float> data) where TOp : struct, IReduceOp
    {
        var socket = _previous!;
        var header = _receiveHeader.AsSpan();
        ReceiveExactly(socket, header);
        WireProtocol.CheckCallHeader(header, _sequence, data.Length, Rank, PreviousRank);

        int world = WorldSize, phases = 2 * (world - 1);
        var bf16 = _options.Wire == WireFormat.Bf16;
        var incoming = MemoryMarshal.Cast<byte, float>(_receiveStaging!.Memory.Span);
        var incomingBf16 = MemoryMarshal.Cast<byte, ushort>(_receiveStaging.Memory.Span);
        var widened = bf16 ? MemoryMarshal.Cast<byte, float>(_widenScratch!.Memory.Span) : default;
        for (var phase = 0; phase < phases; phase++)
        {
            var reducing = phase < world - 1;
            var finishing = phase == world - 2;
            var forward = phase < phases - 1;
            var segment = reducing ? Mod(Rank - phase - 1, world) : Mod(Rank - (phase - (world - 1)), world);
            var (start, length) = SegmentBounds(data.Length, world, segment);
            for (var offset = 0; offset < length; offset += _chunkElements)
            {
                var count = Math.Min(_chunkElements, length - offset);
                var chunk = data.Slice(start + offset, count);
                if (!bf16)
                {
                    if (reducing)
                    {
                        ReceiveExactly(socket, MemoryMarshal.AsBytes(incoming[..count]));
                        TOp.Combine(incoming[..count], chunk);
                    }
                    else
                    {
                        // All-gather: the finished values land straight in the caller's buffer.
                        ReceiveExactly(socket, MemoryMarshal.AsBytes(chunk));
                    }
                }
                else
                {
                    ReceiveExactly(socket, MemoryMarshal.AsBytes(incomingBf16[..count]));
                    if (reducing)
                    {
                        BFloat16Codec.Widen(incomingBf16[..count], widened);
                        TOp.Combine(widened[..count], chunk);
                    }
                    else
                    {
                        BFloat16Codec.Widen(incomingBf16[..count], chunk);
                    }
                }
                if (finishing)
                {
                    TOp.Finish(chunk, world);
                    // The owner keeps what the others will receive, so every rank ends with the same bits.
                    if (bf16) BFloat16Codec.RoundInPlace(chunk);
                }
                if (forward) _forwardable.Release();
            }
        }
    }

    /// <summary>Segment j covers [j·n/W, (j+1)·n/W): sizes differ by at most one, and may be zero when n &lt; W.</summary>
    internal static (int Start, int Length) SegmentBounds(int length, int world, int segment)
    {
        var start = (int)((long)length * segment / world);
        var end = (int)((long)length * (segment + 1) / world);
        return (start, end - start);
    }

    private static int Mod(int value, int modulus) => ((value % modulus) + modulus) % modulus;

    private static void SendExactly(Socket socket, ReadOnlySpan<byte> bytes)
    {
        while (!bytes.IsEmpty)
        {
            var started = Stopwatch.GetTimestamp();
            try
            {
                bytes = bytes[socket.Send(bytes, SocketFlags.None)..];
            }
            catch (SocketException e) when (IsEarlyTimeout(e, socket.SendTimeout, started))
            {
                throw new EndOfStreamException("The peer reset the connection.", e);
            }
        }
    }

    private static void ReceiveExactly(Socket socket, Span<byte> bytes)
    {
        while (!bytes.IsEmpty)
        {
            var started = Stopwatch.GetTimestamp();
            int received;
            try
            {
                received = socket.Receive(bytes, SocketFlags.None);
            }
            catch (SocketException e) when (IsEarlyTimeout(e, socket.ReceiveTimeout, started))
            {
                throw new EndOfStreamException("The peer reset the connection.", e);
            }
            if (received == 0) throw new EndOfStreamException();
            bytes = bytes[received..];
        }
    }

    /// <summary>
    /// Linux can report ETIMEDOUT for a connection the peer tore down (a reset while data was in
    /// flight), long before our own send/receive timeout: that is a closed peer, not a stall.
    /// </summary>
    private static bool IsEarlyTimeout(SocketException e, int timeoutMilliseconds, long started) =>
        e.SocketErrorCode is SocketError.TimedOut or SocketError.WouldBlock
        && timeoutMilliseconds > 0
        && Stopwatch.GetElapsedTime(started).TotalMilliseconds < 0.9 * timeoutMilliseconds;
}

/// <summary>The bytes ranks exchange besides gradient values.</summary>
internal static class WireProtocol
{
    /// <summary>"ORAR": Orchestrator all-reduce.</summary>
    public const uint Magic = 0x4F52_4152;
    public const ushort Version = 2;
    public const int HelloBytes = 16;
    /// <summary>The acceptor's fresh random challenge, sent first on every link.</summary>
    public const int NonceBytes = 16;
    /// <summary>HMAC-SHA256(secret, nonce · hello), sent after the hello.</summary>
    public const int ProofBytes = 32;
    public const int CallHeaderBytes = 16;

    /// <summary>Hello answers: the acceptor's verdict on the connector's hello.</summary>
    public const byte Accepted = 0, WrongRank = 1, WrongWorld = 2, WrongSettings = 3, WrongVersion = 4, WrongSecret = 5;

    /// <summary>Writes the proof that the sender of <paramref name="hello"/> holds <paramref name="secret"/>, answering <paramref name="nonce"/>.</summary>
    public static void Prove(byte[] secret, ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> hello, Span<byte> proof)
    {
        Span<byte> message = stackalloc byte[NonceBytes + HelloBytes];
        nonce.CopyTo(message);
        hello.CopyTo(message[NonceBytes..]);
        System.Security.Cryptography.HMACSHA256.HashData(secret, message, proof);
    }

    /// <summary>Whether <paramref name="proof"/> answers <paramref name="nonce"/> for <paramref name="hello"/> with <paramref name="secret"/> (constant time).</summary>
    public static bool Proves(byte[] secret, ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> hello, ReadOnlySpan<byte> proof)
    {
        Span<byte> expected = stackalloc byte[ProofBytes];
        Prove(secret, nonce, hello, expected);
        return System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(expected, proof);
    }

    /// <summary>magic u32 · version u16 · wire u8 · op u8 · rank i32 · world i32 (little-endian).</summary>
    public static void WriteHello(Span<byte> destination, int rank, int world, WireFormat wire, ReduceOperation operation)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(destination, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(destination[4..], Version);
        destination[6] = (byte)wire;
        destination[7] = (byte)operation;
        BinaryPrimitives.WriteInt32LittleEndian(destination[8..], rank);
        BinaryPrimitives.WriteInt32LittleEndian(destination[12..], world);
    }

    /// <summary>Checks a connector's hello against what this acceptor expects.</summary>
    public static (byte Verdict, int Rank) CheckHello(ReadOnlySpan<byte> hello, int expectedRank, int world, WireFormat wire, ReduceOperation operation)
    {
        if (BinaryPrimitives.ReadUInt32LittleEndian(hello) != Magic || BinaryPrimitives.ReadUInt16LittleEndian(hello[4..]) != Version)
            return (WrongVersion, -1);
        var rank = BinaryPrimitives.ReadInt32LittleEndian(hello[8..]);
        if (BinaryPrimitives.ReadInt32LittleEndian(hello[12..]) != world) return (WrongWorld, rank);
        if (hello[6] != (byte)wire || hello[7] != (byte)operation) return (WrongSettings, rank);
        return (rank == expectedRank ? Accepted : WrongRank, rank);
    }

    /// <summary>Every collective opens with magic u32 · sequence u32 · element count i64.</summary>
    public static void WriteCallHeader(Span<byte> destination, uint sequence, long count)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(destination, Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[4..], sequence);
        BinaryPrimitives.WriteInt64LittleEndian(destination[8..], count);
    }

    /// <summary>Fails the collective when rank−1 is at another call or reduces another length.</summary>
    public static void CheckCallHeader(ReadOnlySpan<byte> header, uint sequence, long count, int rank, int previous)
    {
        var theirSequence = BinaryPrimitives.ReadUInt32LittleEndian(header[4..]);
        var theirCount = BinaryPrimitives.ReadInt64LittleEndian(header[8..]);
        if (BinaryPrimitives.ReadUInt32LittleEndian(header) != Magic || theirSequence != sequence || theirCount != count)
            RingErrors.ThrowMismatch(rank, previous, sequence, count, theirSequence, theirCount);
    }
}

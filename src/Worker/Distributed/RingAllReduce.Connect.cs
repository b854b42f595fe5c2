using System.Diagnostics;
using System.Net.Sockets;

namespace Orchestrator.Worker.Distributed;

// Rendezvous: each rank listens on its own endpoint, connects to rank+1 (retrying until it
// listens) and accepts rank−1; a 16-byte hello makes sure both ends agree on ranks, world size,
// wire format and operation before any gradient moves.
public sealed partial class RingAllReduce
{
    /// <summary>
    /// Binds this rank's endpoint and forms the ring. Every rank must call it (in any order) within
    /// <see cref="RingAllReduceOptions.ConnectTimeout"/>.
    /// </summary>
    public static Task<RingAllReduce> ConnectAsync(RingAllReduceOptions options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (options.Endpoints.Count == 1) return Task.FromResult(new RingAllReduce(options, null, null));
        var own = options.Endpoints[options.Rank];
        var endPoint = own.Resolve();
        var listener = own.CreateSocket(endPoint);
        try
        {
            if (own.IsUnix && File.Exists(own.UnixPath)) File.Delete(own.UnixPath!); // a stale file from a dead run
            listener.Bind(endPoint);
            listener.Listen(8);
        }
        catch
        {
            listener.Dispose();
            throw;
        }
        return ConnectAsync(options, listener, cancellationToken);
    }

    /// <summary>
    /// Forms the ring on a listener that is already bound and listening (e.g. to port 0, whose
    /// number was then published to the peers). Takes ownership of <paramref name="listener"/>
    /// and closes it once the ring is formed.
    /// </summary>
    public static async Task<RingAllReduce> ConnectAsync(RingAllReduceOptions options, Socket listener, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(listener);
        options.Validate();
        int world = options.Endpoints.Count, rank = options.Rank;
        if (world == 1)
        {
            listener.Dispose();
            return new RingAllReduce(options, null, null);
        }
        var deadline = Stopwatch.GetTimestamp() + (long)(options.ConnectTimeout.TotalSeconds * Stopwatch.Frequency);
        Socket? next = null, previous = null;
        try
        {
            // Blocking calls on pool threads: the data sockets then stay in the kernel's blocking
            // mode, which the ring's send and receive threads use (an async call would switch them).
            var connecting = Task.Run(() => ConnectToNext(options, deadline, cancellationToken), cancellationToken);
            var accepting = Task.Run(() => AcceptPrevious(options, listener, deadline, cancellationToken), cancellationToken);
            try
            {
                await Task.WhenAll(connecting, accepting).ConfigureAwait(false);
            }
            finally
            {
                if (connecting.IsCompletedSuccessfully) next = connecting.Result;
                if (accepting.IsCompletedSuccessfully) previous = accepting.Result;
            }
            Configure(next!, options);
            Configure(previous!, options);
            return new RingAllReduce(options, next, previous);
        }
        catch
        {
            next?.Dispose();
            previous?.Dispose();
            throw;
        }
        finally
        {
            var path = options.Endpoints[rank].UnixPath;
            listener.Dispose();
            if (path is not null) TryDelete(path);
        }
    }

    private static Socket ConnectToNext(RingAllReduceOptions options, long deadline, CancellationToken cancellationToken)
    {
        int rank = options.Rank, peer = (rank + 1) % options.Endpoints.Count;
        var endpoint = options.Endpoints[peer];
        var delay = TimeSpan.FromMilliseconds(10);
        Exception? last = null;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var remaining = Remaining(deadline);
            if (remaining <= TimeSpan.Zero)
                RingErrors.ThrowConnectFailed(rank, peer, endpoint, $"could not be reached within {options.ConnectTimeout.TotalSeconds:0.###} s: {last?.Message}", last);
            Socket? socket = null;
            try
            {
                var address = endpoint.Resolve();
                socket = endpoint.CreateSocket(address);
                // A blocking connect to an unreachable host can hang for minutes: cap it with the deadline.
                using (cancellationToken.Register(static s => ((Socket)s!).Dispose(), socket))
                using (new Timer(static s => ((Socket)s!).Dispose(), socket, remaining, Timeout.InfiniteTimeSpan))
                    socket.Connect(address);
                socket.SendTimeout = socket.ReceiveTimeout = Milliseconds(remaining);
                // The acceptor's nonce, then our hello with the proof that we hold the ring's secret.
                Span<byte> nonce = stackalloc byte[WireProtocol.NonceBytes];
                ReceiveExactly(socket, nonce);
                Span<byte> hello = stackalloc byte[WireProtocol.HelloBytes + WireProtocol.ProofBytes];
                WireProtocol.WriteHello(hello, rank, options.Endpoints.Count, options.Wire, options.Operation);
                WireProtocol.Prove(options.Secret, nonce, hello[..WireProtocol.HelloBytes], hello[WireProtocol.HelloBytes..]);
                SendExactly(socket, hello);
                Span<byte> verdict = stackalloc byte[1];
                ReceiveExactly(socket, verdict);
                if (verdict[0] != WireProtocol.Accepted)
                    RingErrors.ThrowConnectFailed(rank, peer, endpoint, $"refused the handshake: {Refusal(verdict[0])}.");
                return socket;
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException or EndOfStreamException)
            {
                // Not listening yet (or still starting): retry with backoff until the deadline.
                socket?.Dispose();
                cancellationToken.ThrowIfCancellationRequested();
                last = e;
                Thread.Sleep(delay < Remaining(deadline) ? delay : Remaining(deadline) > TimeSpan.Zero ? Remaining(deadline) : TimeSpan.Zero);
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromMilliseconds(250).Ticks));
            }
            catch
            {
                socket?.Dispose();
                throw;
            }
        }
    }

    private static Socket AcceptPrevious(RingAllReduceOptions options, Socket listener, long deadline, CancellationToken cancellationToken)
    {
        int world = options.Endpoints.Count, rank = options.Rank, peer = (rank + world - 1) % world;
        var endpoint = options.Endpoints[peer];
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var remaining = Remaining(deadline);
            if (remaining <= TimeSpan.Zero)
                RingErrors.ThrowConnectFailed(rank, peer, endpoint, $"did not connect within {options.ConnectTimeout.TotalSeconds:0.###} s.");
            // Poll in short slices so cancellation is noticed.
            if (!listener.Poll(Microseconds(TimeSpan.FromMilliseconds(Math.Min(100, remaining.TotalMilliseconds))), SelectMode.SelectRead)) continue;
            var socket = listener.Accept();
            try
            {
                socket.SendTimeout = socket.ReceiveTimeout = Milliseconds(Remaining(deadline));
                Span<byte> nonce = stackalloc byte[WireProtocol.NonceBytes];
                System.Security.Cryptography.RandomNumberGenerator.Fill(nonce);
                SendExactly(socket, nonce);
                Span<byte> hello = stackalloc byte[WireProtocol.HelloBytes + WireProtocol.ProofBytes];
                ReceiveExactly(socket, hello);
                var (verdict, theirRank) = WireProtocol.Proves(options.Secret, nonce, hello[..WireProtocol.HelloBytes], hello[WireProtocol.HelloBytes..])
                    ? WireProtocol.CheckHello(hello[..WireProtocol.HelloBytes], peer, world, options.Wire, options.Operation)
                    : (WireProtocol.WrongSecret, -1);
                SendExactly(socket, [verdict]);
                if (verdict != WireProtocol.Accepted)
                    RingErrors.ThrowConnectFailed(rank, peer, endpoint, $"was expected, but rank {theirRank} connected with a hello it had to refuse: {Refusal(verdict)}.");
                return socket;
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        }
    }

    private static void Configure(Socket socket, RingAllReduceOptions options)
    {
        if (socket.AddressFamily != AddressFamily.Unix) socket.NoDelay = true;
        if (options.SocketBufferBytes > 0)
        {
            socket.SendBufferSize = options.SocketBufferBytes;
            socket.ReceiveBufferSize = options.SocketBufferBytes;
        }
        // Kernel timeouts bound every blocking call of a collective: a stalled peer fails it.
        socket.SendTimeout = socket.ReceiveTimeout = Milliseconds(options.Timeout);
    }

    private static string Refusal(byte verdict) => verdict switch
    {
        WireProtocol.WrongRank => "it expects another rank on this link (check the endpoint list and ranks)",
        WireProtocol.WrongWorld => "it was given another world size",
        WireProtocol.WrongSettings => "it uses another wire format or reduce operation",
        WireProtocol.WrongVersion => "it speaks another protocol version",
        WireProtocol.WrongSecret => "this rank does not hold the ring's secret (it belongs to another assignment of the trial, or to none)",
        _ => $"verdict {verdict}",
    };

    private static TimeSpan Remaining(long deadline) => Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), deadline);

    private static int Milliseconds(TimeSpan span) => (int)Math.Clamp(Math.Ceiling(span.TotalMilliseconds), 1, int.MaxValue);

    private static int Microseconds(TimeSpan span) => (int)Math.Clamp(span.TotalMicroseconds, 1, int.MaxValue);

    private static void TryDelete(string path)
    {
        try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

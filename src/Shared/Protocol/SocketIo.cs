namespace Orchestrator.Protocol;

/// <summary>
/// Whole-buffer reads and writes on a connection's stream, for the gradient socket's two ends: a
/// <see cref="System.Net.Sockets.NetworkStream"/> over TCP or a Unix socket, or the
/// <see cref="System.Net.Security.SslStream"/> over it when the coordinator serves TLS.
/// </summary>
public static class SocketIo
{
    /// <summary>
    /// Fills <paramref name="buffer"/>. False when the peer closed its sending half before the first
    /// byte (a clean end between frames); <see cref="IOException"/> when it closed partway through.
    /// </summary>
    public static async ValueTask<bool> TryReceiveExactlyAsync(Stream stream, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var read = 0;
        while (read < buffer.Length)
        {
            var n = await stream.ReadAsync(buffer[read..], cancellationToken).ConfigureAwait(false);
            if (n == 0)
            {
                if (read == 0) return false;
                throw new IOException($"the connection closed {read} bytes into a {buffer.Length}-byte frame");
            }
            read += n;
        }
        return true;
    }

    /// <summary>Fills <paramref name="buffer"/>; <see cref="IOException"/> when the peer closes first.</summary>
    public static async ValueTask ReceiveExactlyAsync(Stream stream, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        if (!await TryReceiveExactlyAsync(stream, buffer, cancellationToken).ConfigureAwait(false) && !buffer.IsEmpty)
            throw new IOException("the connection closed");
    }

    /// <summary>Sends all of <paramref name="buffer"/>.</summary>
    public static ValueTask SendAllAsync(Stream stream, ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stream);
        return stream.WriteAsync(buffer, cancellationToken);
    }
}

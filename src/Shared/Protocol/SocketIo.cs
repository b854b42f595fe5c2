using System.Net.Sockets;

namespace Orchestrator.Protocol;

/// <summary>Whole-buffer reads and writes on a stream socket (TCP or Unix), for the gradient socket's two ends.</summary>
public static class SocketIo
{
    /// <summary>
    /// Fills <paramref name="buffer"/>. False when the peer closed its sending half before the first
    /// byte (a clean end between frames); <see cref="IOException"/> when it closed partway through.
    /// </summary>
    public static async ValueTask<bool> TryReceiveExactlyAsync(Socket socket, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(socket);
        var read = 0;
        while (read < buffer.Length)
        {
            var n = await socket.ReceiveAsync(buffer[read..], SocketFlags.None, cancellationToken).ConfigureAwait(false);
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
    public static async ValueTask ReceiveExactlyAsync(Socket socket, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        if (!await TryReceiveExactlyAsync(socket, buffer, cancellationToken).ConfigureAwait(false) && !buffer.IsEmpty)
            throw new IOException("the connection closed");
    }

    /// <summary>Sends all of <paramref name="buffer"/>.</summary>
    public static async ValueTask SendAllAsync(Socket socket, ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(socket);
        while (!buffer.IsEmpty)
        {
            var n = await socket.SendAsync(buffer, SocketFlags.None, cancellationToken).ConfigureAwait(false);
            buffer = buffer[n..];
        }
    }
}

using System.Runtime.CompilerServices;
using System.Security.Cryptography;

namespace Orchestrator.Checkpoints;

/// <summary>One piece of a file in transit; the last one carries the SHA-256 of the whole file.</summary>
/// <param name="Data">The bytes. The memory is reused: valid until the enumerator moves on twice (copy it before then).</param>
/// <param name="Offset">Where <paramref name="Data"/> starts in the file.</param>
/// <param name="Sha256">Lower-case hex SHA-256 of the whole file on the last chunk, null before.</param>
public readonly record struct FileChunk(ReadOnlyMemory<byte> Data, long Offset, string? Sha256)
{
    /// <summary>True on the last chunk (the one carrying the hash).</summary>
    public bool IsLast => Sha256 is not null;
}

/// <summary>
/// How a file (a checkpoint) travels over a stream of messages, on both sides: <see cref="ReadAsync"/>
/// splits it into chunks with a running SHA-256 that the last chunk carries, and
/// <see cref="ChunkedFileReceiver"/> writes chunks to a temporary file, checks length and hash,
/// and renames it into place. The worker's upload, the coordinator's two downloads, the
/// coordinator's upload and `orch best` all use these, whatever message carries the bytes.
/// </summary>
public static class ChunkedFile
{
    /// <summary>Bytes per chunk: well under gRPC's message limit, large enough that framing costs little.</summary>
    public const int DefaultChunkSize = 256 * 1024;

    /// <summary>
    /// Reads <paramref name="stream"/> to its end in chunks of <paramref name="chunkSize"/> bytes
    /// (the last may be shorter; an empty stream is one empty chunk). The last chunk carries the SHA-256.
    /// </summary>
    public static async IAsyncEnumerable<FileChunk> ReadAsync(Stream stream, int chunkSize = DefaultChunkSize,
        [EnumeratorCancellation] CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentOutOfRangeException.ThrowIfLessThan(chunkSize, 1);
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        // Two buffers: the next chunk is read ahead to know whether this one is the last, while the
        // caller may still be sending the one it was given.
        var current = new byte[chunkSize];
        var next = new byte[chunkSize];
        var n = await stream.ReadAtLeastAsync(current, chunkSize, throwOnEndOfStream: false, ct).ConfigureAwait(false);
        long offset = 0;
        while (true)
        {
            var following = n == chunkSize ? await stream.ReadAtLeastAsync(next, chunkSize, throwOnEndOfStream: false, ct).ConfigureAwait(false) : 0;
            sha.AppendData(current, 0, n);
            var last = following == 0;
            yield return new FileChunk(current.AsMemory(0, n), offset, last ? Convert.ToHexStringLower(sha.GetHashAndReset()) : null);
            if (last) yield break;
            offset += n;
            (current, next) = (next, current);
            n = following;
        }
    }

    /// <summary>Reads a whole file in chunks (see <see cref="ReadAsync(Stream, int, CancellationToken)"/>).</summary>
    public static async IAsyncEnumerable<FileChunk> ReadFileAsync(string path, int chunkSize = DefaultChunkSize,
        [EnumeratorCancellation] CancellationToken ct = default)
    {
        var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, 1 << 16, useAsync: true);
        await using (file.ConfigureAwait(false))
        {
            await foreach (var chunk in ReadAsync(file, chunkSize, ct).ConfigureAwait(false))
                yield return chunk;
        }
    }
}

/// <summary>Why a chunked transfer was refused; each side maps it to its own error (a gRPC status, an exit code).</summary>
public enum TransferFailure
{
    /// <summary>More bytes arrived than the sender announced.</summary>
    TooLong,
    /// <summary>Fewer bytes arrived than announced: the transfer was cut short.</summary>
    Truncated,
    /// <summary>The transfer ended without the hash that closes it.</summary>
    MissingHash,
    /// <summary>The bytes do not have the announced SHA-256: damaged in transit.</summary>
    HashMismatch,
}

/// <summary>A chunked transfer that was refused; nothing was written to its target.</summary>
public sealed class ChunkedTransferException(TransferFailure failure, string message) : IOException(message)
{
    /// <summary>What went wrong.</summary>
    public TransferFailure Failure { get; } = failure;
}

/// <summary>
/// Receives a chunked file: the bytes go to a temporary file beside <c>target</c>, and only
/// <see cref="CommitAsync"/> with the right length and SHA-256 renames it into place, atomically;
/// a refused or abandoned transfer (disposed without a commit) deletes the temporary file, so the
/// target is never half written and a good earlier file there is never replaced by a bad one.
/// </summary>
public sealed class ChunkedFileReceiver : IAsyncDisposable
{
    private readonly string _target;
    private readonly string _temp;
    private readonly string _what;
    private readonly long? _expectedLength;
    private readonly FileStream _file;
    private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    private long _length;
    private bool _closed;
    private bool _committed;

    /// <param name="target">Where the file goes once verified (its folder is created).</param>
    /// <param name="expectedLength">The length the sender announced, when it did: more is refused at once, less at the commit.</param>
    /// <param name="what">What is being received, for error messages ("the checkpoint of trial X").</param>
    public ChunkedFileReceiver(string target, long? expectedLength = null, string? what = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(target);
        if (expectedLength is < 0) throw new ArgumentOutOfRangeException(nameof(expectedLength), expectedLength, "a length is 0 or more");
        _target = Path.GetFullPath(target);
        _expectedLength = expectedLength;
        _what = what ?? Path.GetFileName(_target);
        Directory.CreateDirectory(Path.GetDirectoryName(_target)!);
        _temp = $"{_target}.{Guid.NewGuid():N}.partial";
        _file = new FileStream(_temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true);
    }

    /// <summary>Bytes received so far.</summary>
    public long Length => _length;

    /// <summary>The verified file's path (valid after <see cref="CommitAsync"/>).</summary>
    public string Target => _target;

    /// <summary>Appends one chunk.</summary>
    /// <exception cref="ChunkedTransferException">More bytes than announced (<see cref="TransferFailure.TooLong"/>).</exception>
    public async ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        ObjectDisposedException.ThrowIf(_closed, this);
        if (_length + data.Length > _expectedLength)
            throw new ChunkedTransferException(TransferFailure.TooLong,
                $"{_what}: more than the announced {_expectedLength} bytes arrived ({_length + data.Length} so far)");
        _hash.AppendData(data.Span);
        await _file.WriteAsync(data, ct).ConfigureAwait(false);
        _length += data.Length;
    }

    /// <summary>
    /// Checks the length (when announced) and <paramref name="expectedSha256"/> (hex, any case;
    /// null when the sender never sent it), flushes to disk and renames the file into place.
    /// </summary>
    /// <exception cref="ChunkedTransferException">A short transfer, a missing hash or a hash mismatch; the target is untouched.</exception>
    public async Task CommitAsync(string? expectedSha256, CancellationToken ct)
    {
        ObjectDisposedException.ThrowIf(_closed, this);
        _closed = true;
        await _file.FlushAsync(ct).ConfigureAwait(false);
        _file.Flush(flushToDisk: true);
        await _file.DisposeAsync().ConfigureAwait(false);
        if (string.IsNullOrEmpty(expectedSha256))
            throw new ChunkedTransferException(TransferFailure.MissingHash, $"{_what}: the transfer ended after {_length} bytes without its SHA-256 (cut short?)");
        if (_length < _expectedLength)
            throw new ChunkedTransferException(TransferFailure.Truncated, $"{_what}: received {_length} of the announced {_expectedLength} bytes");
        var actual = Convert.ToHexStringLower(_hash.GetHashAndReset());
        if (!string.Equals(actual, expectedSha256, StringComparison.OrdinalIgnoreCase))
            throw new ChunkedTransferException(TransferFailure.HashMismatch,
                $"{_what} was damaged in transit: its {_length} bytes have SHA-256 {actual}, the sender's is {expectedSha256}");
        File.Move(_temp, _target, overwrite: true);
        _committed = true;
    }

    /// <summary>Deletes the temporary file unless the transfer was committed.</summary>
    public async ValueTask DisposeAsync()
    {
        _closed = true;
        try
        {
            await _file.DisposeAsync().ConfigureAwait(false);
        }
        catch (IOException) when (!_committed)
        {
            // Flushing what was buffered failed (a full disk): the file is dropped below anyway.
        }
        finally
        {
            _hash.Dispose();
            // Never left behind: on a full volume it would hold the space a retry needs.
            if (!_committed) File.Delete(_temp);
        }
    }
}

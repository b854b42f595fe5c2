using System.Buffers;
using System.Globalization;
using System.IO.MemoryMappedFiles;

namespace Orchestrator.Protocol;

/// <summary>
/// A file mapped into memory by two processes on one machine: the coordinator creates it (in
/// /dev/shm when there is one, so it lives in RAM) and a rank on the same machine opens it. The
/// gradient socket's shared-memory mode moves gradient bytes through it and only small frames
/// through the socket.
/// </summary>
public sealed unsafe class SharedMemorySegment : MemoryManager<byte>
{
    /// <summary>File names of segments: the creating process id makes stale ones recognisable.</summary>
    public const string Prefix = "orch-grad-";

    private readonly MemoryMappedFile _file;
    private readonly MemoryMappedViewAccessor _view;
    private readonly byte* _pointer;
    private bool _disposed;

    private SharedMemorySegment(string path, MemoryMappedFile file, long length)
    {
        Path = path;
        _file = file;
        _view = file.CreateViewAccessor(0, length, MemoryMappedFileAccess.ReadWrite);
        byte* pointer = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
        _pointer = pointer + _view.PointerOffset;
        Length = checked((int)length);
    }

    /// <summary>Where the segment's file is (or was, once unlinked).</summary>
    public string Path { get; }

    /// <summary>Bytes mapped.</summary>
    public int Length { get; }

    /// <summary>The folder segments are made in: /dev/shm when it exists (RAM), else the temporary folder.</summary>
    public static string Folder => Directory.Exists("/dev/shm") ? "/dev/shm" : System.IO.Path.GetTempPath();

    /// <summary>Creates and maps a new segment of <paramref name="length"/> bytes (at most 2 GiB − 1) under <see cref="Folder"/>.</summary>
    public static SharedMemorySegment Create(long length)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(length, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, int.MaxValue);
        var path = System.IO.Path.Combine(Folder, string.Create(CultureInfo.InvariantCulture, $"{Prefix}{Environment.ProcessId}-{Guid.NewGuid():N}.shm"));
        // Readable and writable by this user only: the ranks that map it run as the same user.
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.ReadWrite, Share = FileShare.ReadWrite };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        var stream = new FileStream(path, options);
        MemoryMappedFile? file = null;
        try
        {
            stream.SetLength(length);
            file = MemoryMappedFile.CreateFromFile(stream, null, length, MemoryMappedFileAccess.ReadWrite, HandleInheritability.None, leaveOpen: false);
            return new SharedMemorySegment(path, file, length);
        }
        catch
        {
            if (file is null) stream.Dispose();
            else file.Dispose();
            File.Delete(path);
            throw;
        }
    }

    /// <summary>Maps an existing segment made by <see cref="Create"/> in another process.</summary>
    /// <exception cref="IOException">No such segment, or not one of ours.</exception>
    public static SharedMemorySegment Open(string path, long length)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!System.IO.Path.GetFileName(path).StartsWith(Prefix, StringComparison.Ordinal))
            throw new IOException($"'{path}' is not a gradient segment");
        var file = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.ReadWrite);
        try
        {
            return new SharedMemorySegment(path, file, length);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Removes segments left in <see cref="Folder"/> by processes that no longer run (a coordinator
    /// killed with its segments still named). Returns how many it removed.
    /// </summary>
    public static int RemoveStale() => StaleFiles.Remove(Folder, Prefix, ".shm");

    /// <summary>Removes the file; the mapping lives on in every process that has it mapped.</summary>
    public void Unlink()
    {
        try
        {
            File.Delete(Path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Already gone.
        }
    }

    /// <inheritdoc />
    public override Span<byte> GetSpan()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return new Span<byte>(_pointer, Length);
    }

    /// <inheritdoc />
    public override MemoryHandle Pin(int elementIndex = 0)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(elementIndex);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(elementIndex, Length);
        return new MemoryHandle(_pointer + elementIndex);
    }

    /// <inheritdoc />
    public override void Unpin() { }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (_disposed) return;
        _disposed = true;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _file.Dispose();
    }
}

/// <summary>Who is at the other end of a Unix domain socket (Linux SO_PEERCRED), to grant shared memory only to the same user.</summary>
public static partial class UnixPeer
{
    /// <summary>The peer's user id, or null when the socket is not a Unix socket or the platform cannot tell.</summary>
    public static uint? Uid(System.Net.Sockets.Socket socket)
    {
        ArgumentNullException.ThrowIfNull(socket);
        if (!OperatingSystem.IsLinux() || socket.AddressFamily != System.Net.Sockets.AddressFamily.Unix) return null;
        Span<byte> credentials = stackalloc byte[12]; // struct ucred { pid_t pid; uid_t uid; gid_t gid; }
        try
        {
            return socket.GetRawSocketOption(1 /* SOL_SOCKET */, 17 /* SO_PEERCRED */, credentials) == 12
                ? System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(credentials[4..])
                : null;
        }
        catch (System.Net.Sockets.SocketException)
        {
            return null;
        }
    }

    /// <summary>This process's effective user id (null off Linux).</summary>
    public static uint? OwnUid() => OperatingSystem.IsLinux() ? geteuid() : null;

    [System.Runtime.InteropServices.LibraryImport("libc")]
    private static partial uint geteuid();
}

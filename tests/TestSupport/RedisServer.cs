using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Orchestrator.TestSupport;

/// <summary>
/// A real <c>redis-server</c> process for tests: a free loopback port, its own temporary data
/// folder, append-only persistence with an fsync per write (so a <c>kill -9</c> loses nothing),
/// and <see cref="KillAsync"/>/<see cref="RestartAsync"/> to test what survives. The binary is
/// found on PATH; without it the fixture fails (never skips) and says how to install it.
/// </summary>
public sealed class RedisServer : IAsyncDisposable
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(20);
    private readonly string _binary;
    private Process? _process;
    private readonly StringBuilder _log = new();

    private RedisServer(string binary, string directory, int port)
    {
        _binary = binary;
        Directory = directory;
        Port = port;
    }

    /// <summary>The loopback port it listens on (kept across restarts).</summary>
    public int Port { get; }

    /// <summary>Its data folder (kept across restarts, deleted on dispose).</summary>
    public string Directory { get; }

    /// <summary>A StackExchange.Redis configuration string for this server.</summary>
    public string Configuration => $"127.0.0.1:{Port}";

    /// <summary>Whether the process is running.</summary>
    public bool IsRunning => _process is { HasExited: false };

    /// <summary>Starts a server and waits until it answers PING.</summary>
    public static async Task<RedisServer> StartAsync(CancellationToken ct)
    {
        var binary = FindOnPath("redis-server")
            ?? throw new InvalidOperationException(
                "redis-server was not found on PATH. These tests need a real Redis: apt-get install redis-server (or run .ci/run).");
        var directory = Path.Combine(Path.GetTempPath(), "orch-redis-" + Guid.NewGuid().ToString("N"));
        System.IO.Directory.CreateDirectory(directory);
        var server = new RedisServer(binary, directory, FreePort());
        try
        {
            await server.RestartAsync(ct).ConfigureAwait(false);
        }
        catch
        {
            await server.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        return server;
    }

    /// <summary>Starts the process again on the same port and folder (after <see cref="KillAsync"/>).</summary>
    public async Task RestartAsync(CancellationToken ct)
    {
        if (IsRunning) throw new InvalidOperationException("redis-server is already running.");
        var start = new ProcessStartInfo(_binary)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = Directory,
        };
        foreach (var arg in new[]
        {
            "--port", Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--bind", "127.0.0.1",
            "--dir", Directory,
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--save", "",
            "--daemonize", "no",
            "--protected-mode", "no",
        })
        {
            start.ArgumentList.Add(arg);
        }
        var process = new Process { StartInfo = start };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_log) _log.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_log) _log.AppendLine(e.Data); };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _process = process;

        var deadline = Stopwatch.StartNew();
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            if (process.HasExited) throw new InvalidOperationException($"redis-server exited with {process.ExitCode} on start:\n{Log}");
            if (await PingAsync(ct).ConfigureAwait(false)) return;
            if (deadline.Elapsed > StartTimeout) throw new TimeoutException($"redis-server did not answer PING within {StartTimeout}:\n{Log}");
            await Task.Delay(50, ct).ConfigureAwait(false);
        }
    }

    /// <summary>Kills the process with SIGKILL (no shutdown, no final save) and waits for it to exit.</summary>
    public async Task KillAsync(CancellationToken ct)
    {
        if (_process is not { } process) return;
        if (!process.HasExited) process.Kill(entireProcessTree: false);
        await process.WaitForExitAsync(ct).ConfigureAwait(false);
        process.Dispose();
        _process = null;
    }

    /// <summary>What the server printed, for failure messages.</summary>
    public string Log { get { lock (_log) return _log.ToString(); } }

    /// <summary>Kills the server and deletes its folder.</summary>
    public async ValueTask DisposeAsync()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await KillAsync(cts.Token).ConfigureAwait(false);
        try { System.IO.Directory.Delete(Directory, recursive: true); }
        catch (IOException) { /* a leftover temp folder is harmless */ }
    }

    // A raw RESP PING, so the fixture does not depend on the client library under test.
    private async Task<bool> PingAsync(CancellationToken ct)
    {
        try
        {
            using var client = new TcpClient();
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(TimeSpan.FromSeconds(1));
            await client.ConnectAsync(IPAddress.Loopback, Port, timeout.Token).ConfigureAwait(false);
            var stream = client.GetStream();
            await stream.WriteAsync("PING\r\n"u8.ToArray(), timeout.Token).ConfigureAwait(false);
            var buffer = new byte[64];
            var read = await stream.ReadAsync(buffer, timeout.Token).ConfigureAwait(false);
            // "-LOADING" while the append-only file is replayed counts as not ready yet.
            return Encoding.ASCII.GetString(buffer, 0, read).StartsWith("+PONG", StringComparison.Ordinal);
        }
        catch (Exception e) when (e is SocketException or IOException or OperationCanceledException && !ct.IsCancellationRequested)
        {
            return false;
        }
    }

    /// <summary>A loopback port nothing listens on right now.</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    internal static string? FindOnPath(string name)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = Path.Combine(dir, name);
            if (File.Exists(candidate)) return candidate;
        }
        return null;
    }
}

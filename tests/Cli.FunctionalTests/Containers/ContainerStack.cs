using System.Text;
using Orchestrator.TestSupport;

namespace Orchestrator.Cli.FunctionalTests.Containers;

/// <summary>
/// Containers on a podman network of their own, with named volumes and ports published on
/// 127.0.0.1, as a cluster would run the images. Everything it creates carries one random name
/// prefix and is removed on dispose, whatever happened.
/// </summary>
internal sealed class ContainerStack : IAsyncDisposable
{
    /// <summary>The images containers/build.sh makes (on a machine without a registry: with --base of containers/debian-base.sh).</summary>
    public const string CoordinatorImage = "localhost/orchestrator/coordinator:dev";
    public const string WorkerImage = "localhost/orchestrator/worker:dev";
    public const string BaseImage = "localhost/orchestrator/debian-base:bookworm";
    public const string RedisImage = "localhost/orchestrator/test-redis:bookworm";

    private readonly string _prefix = "orch-ct-" + Guid.NewGuid().ToString("N")[..8];
    private readonly List<string> _containers = [];
    private readonly List<string> _volumes = [];
    private readonly Dictionary<(string Role, int ContainerPort), int> _hostPorts = [];
    private bool _network;

    public string Network => _prefix;

    /// <summary>The container name of a role, which is also its host name on the network.</summary>
    public string Name(string role) => $"{_prefix}-{role}";

    /// <summary>Checks the images (one line saying how to build a missing one), builds the test Redis image if needed, creates the network.</summary>
    public static async Task<ContainerStack> CreateAsync()
    {
        Assert.True(Podman.Installed, "podman is not installed: apt-get install podman buildah runc uidmap mmdebstrap (.ci/run does)");
        foreach (var image in new[] { CoordinatorImage, WorkerImage, BaseImage })
            Assert.True(await Podman.ImageExistsAsync(image),
                $"image {image} is missing: run containers/debian-base.sh, then containers/build.sh --base {BaseImage} (.ci/run does)");
        if (!await Podman.ImageExistsAsync(RedisImage))
        {
            var dir = Path.Combine(RepositoryRoot.Path, "tests", "Cli.FunctionalTests", "Containers");
            await Podman.RunAsync("build", "--quiet", "-f", Path.Combine(dir, "redis.Containerfile"), "--build-arg", "BASE=" + BaseImage, "-t", RedisImage, dir);
        }
        var stack = new ContainerStack();
        await Podman.RunAsync("network", "create", stack.Network);
        stack._network = true;
        return stack;
    }

    /// <summary>A named volume, removed with the stack.</summary>
    public async Task<string> VolumeAsync(string role)
    {
        var name = $"{_prefix}-{role}";
        await Podman.RunAsync("volume", "create", name);
        _volumes.Add(name);
        return name;
    }

    /// <summary>
    /// Starts a detached container for <paramref name="role"/>: <paramref name="options"/> go to
    /// `podman run` (volumes, environment), each of <paramref name="ports"/> is published on a free
    /// 127.0.0.1 port, and <paramref name="command"/> follows the image.
    /// </summary>
    public async Task RunAsync(string role, string image, int[] ports, string[] options, params string[] command)
    {
        var args = new List<string> { "run", "-d", "--name", Name(role), "--network", Network, "--network-alias", role };
        foreach (var port in ports)
        {
            var host = RedisServer.FreePort();
            _hostPorts[(role, port)] = host;
            args.AddRange(["-p", $"127.0.0.1:{host}:{port}"]);
        }
        args.AddRange(options);
        args.Add(image);
        args.AddRange(command);
        _containers.Add(Name(role));
        await Podman.RunAsync([.. args]);
    }

    /// <summary>The 127.0.0.1 port that reaches <paramref name="containerPort"/> of <paramref name="role"/>.</summary>
    public int HostPort(string role, int containerPort) => _hostPorts[(role, containerPort)];

    /// <summary>`podman stop`: SIGTERM, then SIGKILL after <paramref name="graceSeconds"/>, as Kubernetes does at the end of a grace period.</summary>
    public Task StopAsync(string role, int graceSeconds) => Podman.RunAsync("stop", "-t", graceSeconds.ToString(), Name(role));

    /// <summary>`podman kill`: SIGKILL, as a node failure or an OOM kill delivers it.</summary>
    public Task KillAsync(string role) => Podman.RunAsync("kill", "-s", "KILL", Name(role));

    /// <summary>Starts a stopped container again, with its volumes and published ports.</summary>
    public Task StartAsync(string role) => Podman.RunAsync("start", Name(role));

    public async Task<int> ExitCodeAsync(string role) =>
        int.Parse(await Podman.RunAsync("inspect", "--format", "{{.State.ExitCode}}", Name(role)), System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Every container's log (its last lines), for failure messages.</summary>
    public async Task<string> LogsAsync(int tail = 80)
    {
        var text = new StringBuilder();
        foreach (var c in _containers)
        {
            var r = await Podman.TryAsync(TimeSpan.FromSeconds(30), "logs", "--tail", tail.ToString(), c);
            text.Append("----- ").Append(c).Append(" (last ").Append(tail).AppendLine(" lines) -----").Append(r.StdOut).Append(r.StdErr);
        }
        return text.ToString();
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var c in _containers) await Podman.TryAsync(TimeSpan.FromMinutes(1), "rm", "-f", "-t", "0", c);
        foreach (var v in _volumes) await Podman.TryAsync(TimeSpan.FromMinutes(1), "volume", "rm", "-f", v);
        if (_network) await Podman.TryAsync(TimeSpan.FromMinutes(1), "network", "rm", "-f", Network);
    }
}

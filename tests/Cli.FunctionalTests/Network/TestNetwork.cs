using System.Globalization;
using System.Text.RegularExpressions;

namespace Orchestrator.Cli.FunctionalTests.Network;

/// <summary>
/// Test hosts on one machine: a bridge in the root network namespace with the first address of a
/// private /24 (10.231.N.0/24, N chosen free), and per host a network namespace joined to it by a
/// veth pair, with its own address. A process started in a host (<see cref="TestHost.Launcher"/>)
/// sees only that host's interface and loopback; the coordinator, listening on
/// <see cref="Gateway"/> in the root namespace, is reached over the bridge like another machine.
/// Faults (<see cref="TestHost"/>) are nftables rules and a TBF qdisc of the host's own link.
/// Every name made starts with "otn" and the creating process's id, so a later run removes what a
/// killed one left (namespaces, links, the processes inside) without touching a live run's. Needs
/// root; without it <see cref="Create"/> fails, it never skips.
/// </summary>
public sealed partial class TestNetwork : IDisposable
{
    private const string Prefix = "otn";
    private const string SubnetBase = "10.231";
    private readonly List<TestHost> _hosts = [];
    private bool _disposed;

    private TestNetwork(string tag, int subnet)
    {
        Tag = tag;
        Subnet = subnet;
    }

    /// <summary>The prefix of every name this network made ("otn" + process id in base 36 + "-" + 2 random characters).</summary>
    public string Tag { get; }

    /// <summary>N of 10.231.N.0/24.</summary>
    public int Subnet { get; }

    /// <summary>The bridge in the root namespace.</summary>
    public string Bridge => Tag + "b";

    /// <summary>The root namespace's address on the bridge (the coordinator listens here).</summary>
    public string Gateway => Address(1);

    /// <summary>The hosts added so far.</summary>
    public IReadOnlyList<TestHost> Hosts => _hosts;

    internal string Address(int host) => $"{SubnetBase}.{Subnet}.{host}";

    /// <summary>Removes a killed run's leftovers, then makes the bridge on a free /24.</summary>
    public static TestNetwork Create()
    {
        if (!Environment.IsPrivilegedProcess)
            throw new InvalidOperationException(
                "The network-fault tests make network namespaces, veth pairs and nftables rules, which needs root (CI runs as root). Run them as root.");
        RemoveLeftovers();
        // Two runs at once must not pick the same subnet: choose and claim it under a file lock.
        using var claim = ClaimLock();
        var used = UsedSubnets();
        var free = Enumerable.Range(1, 254).Where(n => !used.Contains(n)).ToList();
        if (free.Count == 0) throw new InvalidOperationException($"every {SubnetBase}.N.0/24 is in use on this machine");
        var subnet = free[Random.Shared.Next(free.Count)];
        var tag = Prefix + Base36(Environment.ProcessId) + "-" + Base36(Random.Shared.Next(36 * 36)).PadLeft(2, '0');
        var network = new TestNetwork(tag, subnet);
        try
        {
            HostCommands.Run(["ip", "link", "add", network.Bridge, "type", "bridge"]);
            HostCommands.Run(["ip", "addr", "add", network.Gateway + "/24", "dev", network.Bridge]);
            HostCommands.Run(["ip", "link", "set", network.Bridge, "up"]);
        }
        catch
        {
            network.Dispose();
            throw;
        }
        return network;
    }

    /// <summary>A new host: a namespace with loopback and one interface (eth0) on the bridge.</summary>
    public TestHost AddHost()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var n = _hosts.Count + 1;
        var host = new TestHost(n, Tag + "h" + n, Tag + "v" + n, Address(n + 1));
        _hosts.Add(host);
        HostCommands.Run(["ip", "netns", "add", host.Namespace]);
        HostCommands.Run(["ip", "link", "add", host.RootLink, "type", "veth", "peer", "name", TestHost.Interface, "netns", host.Namespace]);
        HostCommands.Run(["ip", "link", "set", host.RootLink, "master", Bridge, "up"]);
        HostCommands.Run(["ip", "-n", host.Namespace, "addr", "add", host.Address + "/24", "dev", TestHost.Interface]);
        HostCommands.Run(["ip", "-n", host.Namespace, "link", "set", TestHost.Interface, "up"]);
        HostCommands.Run(["ip", "-n", host.Namespace, "link", "set", "lo", "up"]);
        return host;
    }

    /// <summary>Kills what still runs in the hosts, deletes them (their rules go with them) and the bridge.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var host in _hosts) RemoveNamespace(host.Namespace);
        foreach (var host in _hosts) HostCommands.TryRun(["ip", "link", "del", host.RootLink]);
        HostCommands.TryRun(["ip", "link", "del", Bridge]);
    }

    /// <summary>Namespaces and links named by a run whose process is gone (killed before it cleaned up).</summary>
    private static void RemoveLeftovers()
    {
        foreach (var line in HostCommands.Run(["ip", "netns", "list"]).Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var name = line.Split(' ', 2)[0];
            if (IsLeftover(name)) RemoveNamespace(name);
        }
        foreach (Match m in LinkName().Matches(HostCommands.Run(["ip", "-o", "link", "show"])))
        {
            if (IsLeftover(m.Groups[1].Value)) HostCommands.TryRun(["ip", "link", "del", m.Groups[1].Value]);
        }
    }

    private static bool IsLeftover(string name)
    {
        var m = OurName().Match(name);
        if (!m.Success) return false;
        var pid = FromBase36(m.Groups[1].Value);
        return pid != Environment.ProcessId && !Directory.Exists($"/proc/{pid}");
    }

    private static void RemoveNamespace(string name)
    {
        // Processes keep a namespace (and its veth) alive after `ip netns del`: end them first.
        var (_, pids, _) = HostCommands.TryRun(["ip", "netns", "pids", name]);
        foreach (var pid in pids.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            HostCommands.TryRun(["kill", "-9", pid]);
        HostCommands.TryRun(["ip", "netns", "del", name]);
    }

    private static HashSet<int> UsedSubnets()
    {
        var text = HostCommands.Run(["ip", "-o", "-4", "addr", "show"]) + HostCommands.Run(["ip", "-4", "route", "show"]);
        return UsedSubnet().Matches(text).Select(m => int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)).ToHashSet();
    }

    private static FileStream ClaimLock()
    {
        var path = Path.Combine(Path.GetTempPath(), "orch-test-network.lock");
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            try
            {
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (DateTime.UtcNow < deadline)
            {
                Thread.Sleep(100);
            }
        }
    }

    private static string Base36(int value)
    {
        const string digits = "0123456789abcdefghijklmnopqrstuvwxyz";
        var s = "";
        do { s = digits[value % 36] + s; value /= 36; } while (value > 0);
        return s;
    }

    private static int FromBase36(string text) =>
        text.Aggregate(0, (acc, c) => acc * 36 + (char.IsDigit(c) ? c - '0' : c - 'a' + 10));

    [GeneratedRegex(@"^otn([0-9a-z]{1,6})-[0-9a-z]{2}")]
    private static partial Regex OurName();

    [GeneratedRegex(@"^\d+: (otn[0-9a-z]+-[0-9a-z]{2}[0-9a-z]*)[@:]", RegexOptions.Multiline)]
    private static partial Regex LinkName();

    [GeneratedRegex(@"\b10\.231\.(\d{1,3})\.\d{1,3}")]
    private static partial Regex UsedSubnet();
}

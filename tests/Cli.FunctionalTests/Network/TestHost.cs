using System.Globalization;
using System.Text;

namespace Orchestrator.Cli.FunctionalTests.Network;

/// <summary>
/// One host of a <see cref="TestNetwork"/>: a network namespace with one link to the bridge, and
/// the faults of that link. This kernel has no netem (CONFIG_NET_SCH_NETEM is off), so:
/// <list type="bullet">
/// <item>a partition is an nftables table in the host dropping every packet it sends or receives
/// (loopback excepted): established connections stay open and silent, as behind a failed switch;</item>
/// <item>loss is <c>numgen random mod 100 &lt; N drop</c> on both directions, N % each way;</item>
/// <item>a slow link is a TBF qdisc on both ends of the veth pair: a rate limit whose queue adds
/// delay under load (up to <see cref="QueueLatency"/>), not a fixed per-packet latency;</item>
/// <item>a blocked port drops TCP to and from one port (the ring's) and nothing else.</item>
/// </list>
/// The rules live in the namespace's own nftables, so deleting the host deletes them too.
/// </summary>
public sealed class TestHost
{
    /// <summary>The host's interface name inside its namespace.</summary>
    public const string Interface = "eth0";

    /// <summary>The longest a packet may wait in a throttled link's queue before TBF drops it.</summary>
    public static readonly TimeSpan QueueLatency = TimeSpan.FromMilliseconds(200);

    private readonly SortedSet<int> _blockedPorts = [];
    private bool _partitioned;
    private int _lossPercent;
    private string? _rate;

    internal TestHost(int number, string ns, string rootLink, string address)
    {
        Number = number;
        Namespace = ns;
        RootLink = rootLink;
        Address = address;
    }

    /// <summary>1, 2, … in the order hosts were added.</summary>
    public int Number { get; }

    /// <summary>The network namespace's name.</summary>
    public string Namespace { get; }

    /// <summary>The veth end in the root namespace (on the bridge).</summary>
    public string RootLink { get; }

    /// <summary>The host's address on the test network.</summary>
    public string Address { get; }

    /// <summary>The command prefix that runs a program in this host: <c>ip netns exec NS</c> (which execs it).</summary>
    public IReadOnlyList<string> Launcher => ["ip", "netns", "exec", Namespace];

    /// <summary>Bytes this host sent onto its link so far (counted on the bridge side).</summary>
    public long BytesSent => Statistic("rx_bytes");

    /// <summary>Bytes this host received from its link so far (counted on the bridge side).</summary>
    public long BytesReceived => Statistic("tx_bytes");

    /// <summary>Cuts the host off: every packet in or out is dropped until <see cref="Reconnect"/>.</summary>
    public void Partition() => Change(() => _partitioned = true);

    /// <summary>Ends a <see cref="Partition"/>.</summary>
    public void Reconnect() => Change(() => _partitioned = false);

    /// <summary>Drops <paramref name="percent"/> % of the packets in each direction (0: none).</summary>
    public void Lose(int percent)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(percent);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(percent, 100);
        Change(() => _lossPercent = percent);
    }

    /// <summary>Drops TCP to and from <paramref name="port"/> on this host, in both directions.</summary>
    public void BlockPort(int port) => Change(() => _blockedPorts.Add(port));

    /// <summary>Ends a <see cref="BlockPort"/>.</summary>
    public void UnblockPort(int port) => Change(() => _blockedPorts.Remove(port));

    /// <summary>Limits the link to <paramref name="rate"/> (tc syntax, e.g. "200mbit") in both directions; null lifts it.</summary>
    public void Throttle(string? rate)
    {
        var latency = QueueLatency.TotalMilliseconds.ToString(CultureInfo.InvariantCulture) + "ms";
        foreach (var (prefix, link) in new[] { ((IReadOnlyList<string>)["ip", "netns", "exec", Namespace], Interface), ([], RootLink) })
        {
            if (rate is null)
            {
                if (_rate is not null) HostCommands.Run([.. prefix, "tc", "qdisc", "del", "dev", link, "root"]);
            }
            else
            {
                HostCommands.Run([.. prefix, "tc", "qdisc", "replace", "dev", link, "root", "tbf", "rate", rate, "burst", "64kb", "latency", latency]);
            }
        }
        _rate = rate;
    }

    /// <summary>What faults this host has now, for failure messages.</summary>
    public override string ToString() =>
        $"host {Number} ({Namespace}, {Address}): {(_partitioned ? "partitioned" : "connected")}, loss {_lossPercent} %, " +
        $"rate {_rate ?? "unlimited"}, blocked ports [{string.Join(",", _blockedPorts)}]";

    private void Change(Action change)
    {
        change();
        // The whole table is replaced in one nft transaction: the faults change at one instant.
        var rules = new StringBuilder();
        if (_partitioned) rules.Append("    drop\n");
        if (_lossPercent > 0) rules.Append(CultureInfo.InvariantCulture, $"    numgen random mod 100 < {_lossPercent} drop\n");
        foreach (var port in _blockedPorts)
            rules.Append(CultureInfo.InvariantCulture, $"    tcp dport {port} drop\n    tcp sport {port} drop\n");
        var script = new StringBuilder("add table inet orchfault\ndelete table inet orchfault\n");
        if (rules.Length > 0)
        {
            script.Append("table inet orchfault {\n");
            script.Append("  chain inbound {\n    type filter hook input priority -10; policy accept;\n    iifname \"lo\" accept\n").Append(rules).Append("  }\n");
            script.Append("  chain outbound {\n    type filter hook output priority -10; policy accept;\n    oifname \"lo\" accept\n").Append(rules).Append("  }\n");
            script.Append("}\n");
        }
        HostCommands.Run(["ip", "netns", "exec", Namespace, "nft", "-f", "-"], script.ToString());
    }

    private long Statistic(string name) =>
        long.Parse(File.ReadAllText($"/sys/class/net/{RootLink}/statistics/{name}").Trim(), CultureInfo.InvariantCulture);
}

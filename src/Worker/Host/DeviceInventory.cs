using System.Globalization;
using System.Text.RegularExpressions;

namespace Orchestrator.Worker.Host;

/// <summary>A GPU this worker offers: the N of cuda:N, its model name and memory (empty and 0 when unknown).</summary>
public sealed record WorkerGpu(int Index, string Name, long MemoryBytes);

/// <summary>
/// The GPUs a worker tells the coordinator about (one scheduling slot each). Detected by default:
/// TorchSharp says whether CUDA works and how many devices it sees (it has no name or memory
/// query), and NVML, the driver's library, adds each one's name and memory. <c>--devices</c>
/// overrides the detection, for tests and for nodes that should offer less than they have:
/// <list type="bullet">
/// <item><c>auto</c>: detect (the default).</item>
/// <item><c>cpu</c>: offer no GPU (CPU trials only).</item>
/// <item><c>cuda:N</c>: offer GPUs 0..N-1, names and memory detected where possible.</item>
/// <item><c>cuda:N:NAME[:MEMORY]</c>: the same, with that name (and memory) each, e.g. <c>cuda:8:H200:141GB</c>
/// (units B, KB, MB, GB, TB in powers of 1000, KiB, MiB, GiB, TiB in powers of 1024).</item>
/// </list>
/// </summary>
public static partial class DeviceInventory
{
    /// <summary>What the flag's help and its error say.</summary>
    public const string Syntax = "auto, cpu, cuda:N or cuda:N:NAME[:MEMORY] (e.g. cuda:8:H200:141GB)";

    /// <summary>The most GPUs one worker may claim (a sanity bound for typos).</summary>
    public const int MaxGpus = 64;

    /// <summary>
    /// Parses <c>--devices</c>. Null means detect (auto); an empty list means CPU only. Throws
    /// <see cref="ArgumentException"/> with one line naming the value and the expected forms.
    /// </summary>
    public static IReadOnlyList<WorkerGpu>? Parse(string? value)
    {
        var v = (value ?? "auto").Trim();
        if (v.Equals("auto", StringComparison.OrdinalIgnoreCase)) return null;
        if (v.Equals("cpu", StringComparison.OrdinalIgnoreCase)) return [];
        var m = Spec().Match(v);
        if (!m.Success) throw Invalid(value, "");
        if (!int.TryParse(m.Groups["count"].Value, NumberStyles.None, CultureInfo.InvariantCulture, out var count) || count is < 1 or > MaxGpus)
            throw Invalid(value, $": the GPU count must be 1 to {MaxGpus}");
        var name = m.Groups["name"].Success ? m.Groups["name"].Value.Trim() : "";
        long memory = 0;
        if (m.Groups["memory"].Success && !TryParseBytes(m.Groups["memory"].Value, out memory))
            throw Invalid(value, $": memory '{m.Groups["memory"].Value}' is not a size such as 80GB, 141GB or 24GiB");
        if (m.Groups["name"].Success && name.Length == 0) throw Invalid(value, ": the GPU name is empty");
        return Enumerable.Range(0, count).Select(i => new WorkerGpu(i, name, memory)).ToList();
    }

    /// <summary>
    /// Where a rank trains: on the device of the slot the coordinator gave it (cuda:N), unless the
    /// worker was started with --device cpu, which always trains on the CPU (with --devices, that
    /// is how slots are exercised on a machine without GPUs). An older coordinator names no device.
    /// </summary>
    public static string TrainingDevice(string workerDevice, string assigned) =>
        workerDevice.Trim().Equals("cpu", StringComparison.OrdinalIgnoreCase) || assigned.Length == 0 ? workerDevice : assigned;

    /// <summary>
    /// The GPUs to offer: <paramref name="devicesFlag"/> when given (missing names and memory
    /// filled in from the driver), else those the worker's <paramref name="device"/> choice trains
    /// on (all visible GPUs for auto or cuda, one for cuda:N, none for cpu).
    /// </summary>
    public static IReadOnlyList<WorkerGpu> Resolve(string? devicesFlag, string device)
    {
        var configured = Parse(devicesFlag);
        if (configured is not null)
            return configured.Select(g => g.Name.Length > 0 || g.MemoryBytes > 0 ? g : Describe(g.Index)).ToList();
        if (Native.TorchRuntime.ResolveDevice(device).type != TorchSharp.DeviceType.CUDA) return [];
        var pinned = device.Trim().ToLowerInvariant() is var d && d.StartsWith("cuda:", StringComparison.Ordinal)
                     && int.TryParse(d[5..], NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : (int?)null;
        var indexes = pinned is { } one ? [one] : Enumerable.Range(0, TorchSharp.torch.cuda.device_count()).ToList();
        return indexes.Select(Describe).ToList();
    }

    /// <summary>How many GPUs this process can train on (0 without CUDA): checked against a --devices claim.</summary>
    public static int Visible()
    {
        try
        {
            return Native.TorchRuntime.ResolveDevice("auto").type == TorchSharp.DeviceType.CUDA ? TorchSharp.torch.cuda.device_count() : 0;
        }
        catch (InvalidOperationException)
        {
            return 0;
        }
    }

    /// <summary>Name and memory of CUDA device <paramref name="index"/> from NVML, where NVML's numbering is known to match CUDA's.</summary>
    private static WorkerGpu Describe(int index)
    {
        // CUDA_VISIBLE_DEVICES renumbers what CUDA sees; NVML does not. Follow a plain list of indexes, else say nothing.
        var visible = Environment.GetEnvironmentVariable("CUDA_VISIBLE_DEVICES");
        var nvmlIndex = index;
        if (!string.IsNullOrWhiteSpace(visible))
        {
            var parts = visible.Split(',', StringSplitOptions.TrimEntries);
            if (index >= parts.Length || !int.TryParse(parts[index], NumberStyles.None, CultureInfo.InvariantCulture, out nvmlIndex))
                return new WorkerGpu(index, "", 0);
        }
        return Native.Nvml.Describe(nvmlIndex) is { } d ? new WorkerGpu(index, d.Name, d.TotalBytes) : new WorkerGpu(index, "", 0);
    }

    /// <summary>"141GB", "80 GiB", "24g", "1073741824".</summary>
    public static bool TryParseBytes(string text, out long bytes)
    {
        bytes = 0;
        var m = Size().Match(text.Trim());
        if (!m.Success || !double.TryParse(m.Groups["n"].Value, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var n)) return false;
        var unit = m.Groups["unit"].Value.ToUpperInvariant();
        double scale = unit switch
        {
            "" or "B" => 1,
            "K" or "KB" => 1e3, "M" or "MB" => 1e6, "G" or "GB" => 1e9, "T" or "TB" => 1e12,
            "KIB" => 1L << 10, "MIB" => 1L << 20, "GIB" => 1L << 30, "TIB" => 1L << 40,
            _ => 0,
        };
        var value = n * scale;
        if (scale == 0 || value < 1 || value > long.MaxValue / 2) return false;
        bytes = (long)value;
        return true;
    }

    private static ArgumentException Invalid(string? value, string detail) =>
        new($"--devices {value}: expected {Syntax}{detail}");

    [GeneratedRegex(@"^cuda:(?<count>\d+)(?::(?<name>[^:]*)(?::(?<memory>[^:]*))?)?$", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex Spec();

    [GeneratedRegex(@"^(?<n>\d+(?:\.\d+)?)\s*(?<unit>[A-Za-z]*)$", RegexOptions.CultureInvariant)]
    private static partial Regex Size();
}

using Microsoft.Extensions.Logging;
using Orchestrator.Protocol.V1;

namespace Orchestrator.Worker.Host;

/// <summary>The worker's GPUs: what it offers the coordinator (one slot each) and where each rank trains.</summary>
public sealed partial class WorkerAgent
{
    // The GPUs offered (known once libtorch is loaded) and, with several, each one's gradient endpoint.
    private IReadOnlyList<WorkerGpu> _gpus = [];
    private IReadOnlyList<string> _deviceEndpoints = [];

    /// <summary>The GPUs this worker offers (after <see cref="RunAsync"/> started).</summary>
    public IReadOnlyList<WorkerGpu> Gpus => _gpus;

    /// <summary>Detects (or takes from --devices) the GPUs to offer, once libtorch is loaded, and says so in the log.</summary>
    private void FindDevices()
    {
        _gpus = DeviceInventory.Resolve(_options.Devices, _options.Device);
        var cpuOnly = _options.Device.Trim().Equals("cpu", StringComparison.OrdinalIgnoreCase);
        var visible = _options.Devices is null || cpuOnly ? _gpus.Count : DeviceInventory.Visible();
        if (_gpus.Count > visible) DevicesLog.NotVisible(_logger, _gpus.Count, visible);
        _deviceEndpoints = DeviceEndpoints();
        DevicesLog.Offering(_logger, _gpus.Count == 0 ? "no GPU (CPU trials, one at a time)"
            : string.Join(", ", _gpus.Select(g => $"cuda:{g.Index}" + (g.Name.Length > 0 ? $" {g.Name}" : "") + (g.MemoryBytes > 0 ? $" {g.MemoryBytes / 1e9:0.#} GB" : ""))));
    }

    private WorkerCapabilities Capabilities()
    {
        var capabilities = new WorkerCapabilities
        {
            Device = _gpus.Count > 0 ? "cuda" : "cpu",
            Gpus = _gpus.Count,
            MemoryBytes = _gpus.Count > 0 && _gpus[0].MemoryBytes > 0 ? _gpus[0].MemoryBytes : GC.GetGCMemoryInfo().TotalAvailableMemoryBytes,
            Version = typeof(WorkerAgent).Assembly.GetName().Version?.ToString() ?? "0",
            CpuCores = Environment.ProcessorCount,
            Host = Environment.MachineName,
        };
        capabilities.Devices.AddRange(_gpus.Select(g => new WorkerDevice { Kind = "cuda", Index = g.Index, Name = g.Name, MemoryBytes = g.MemoryBytes }));
        return capabilities;
    }

    /// <summary>
    /// With several GPUs, one gradient port per GPU: ranks of one trial may share this worker, and
    /// a ring that spans machines needs each of them reachable on its own port. The first GPU uses
    /// the data port; the others --data-port + i when it was given, else free ports.
    /// </summary>
    private List<string> DeviceEndpoints()
    {
        if (_gpus.Count < 2) return [];
        var host = DataEndpoint[..DataEndpoint.LastIndexOf(':')];
        return _gpus.Select((_, i) => $"{host}:{(i == 0 ? DataPort : _options.DataPort != 0 ? DataPort + i : FreePort())}").ToList();
    }

    private static partial class DevicesLog
    {
        [LoggerMessage(107, LogLevel.Information, "Offering {Devices}")]
        public static partial void Offering(ILogger logger, string devices);

        [LoggerMessage(108, LogLevel.Warning, "--devices offers {Offered} GPUs but this process sees {Visible}: trials placed on the missing ones will fail")]
        public static partial void NotVisible(ILogger logger, int offered, int visible);
    }
}

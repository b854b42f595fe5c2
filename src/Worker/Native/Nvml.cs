using System.Runtime.InteropServices;

namespace Orchestrator.Worker.Native;

/// <summary>
/// GPU memory in use, read through NVML (the NVIDIA driver's management library). TorchSharp has
/// no allocator statistics, and NVML works whatever loaded libtorch. Absent drivers simply mean
/// no GPU readings.
/// </summary>
internal static partial class Nvml
{
    private const string Library = "libnvidia-ml.so.1";
    private static readonly Lazy<bool> Available = new(Init);

    [StructLayout(LayoutKind.Sequential)]
    private struct Memory
    {
        public ulong Total;
        public ulong Free;
        public ulong Used;
    }

    [LibraryImport(Library, EntryPoint = "nvmlInit_v2")]
    private static partial int NvmlInit();

    [LibraryImport(Library, EntryPoint = "nvmlDeviceGetCount_v2")]
    private static partial int DeviceCount(out uint count);

    [LibraryImport(Library, EntryPoint = "nvmlDeviceGetHandleByIndex_v2")]
    private static partial int DeviceHandle(uint index, out IntPtr device);

    [LibraryImport(Library, EntryPoint = "nvmlDeviceGetMemoryInfo")]
    private static partial int MemoryInfo(IntPtr device, out Memory memory);

    [LibraryImport(Library, EntryPoint = "nvmlDeviceGetName")]
    private static partial int DeviceName(IntPtr device, [Out] byte[] name, uint length);

    private static bool Init()
    {
        try
        {
            return NvmlInit() == 0;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    /// <summary>Used bytes per GPU; empty without an NVIDIA driver.</summary>
    public static IReadOnlyList<(int Gpu, long UsedBytes)> UsedMemory()
    {
        if (!Available.Value || DeviceCount(out var count) != 0) return [];
        var result = new List<(int, long)>((int)count);
        for (uint i = 0; i < count; i++)
        {
            if (DeviceHandle(i, out var device) == 0 && MemoryInfo(device, out var memory) == 0)
                result.Add(((int)i, (long)memory.Used));
        }
        return result;
    }

    /// <summary>Model name and total memory of GPU <paramref name="index"/> (NVML's numbering); null without an NVIDIA driver.</summary>
    public static (string Name, long TotalBytes)? Describe(int index)
    {
        if (!Available.Value || index < 0 || DeviceHandle((uint)index, out var device) != 0) return null;
        var buffer = new byte[96];
        var name = DeviceName(device, buffer, (uint)buffer.Length) == 0 ? System.Text.Encoding.UTF8.GetString(buffer).TrimEnd('\0') : "";
        var total = MemoryInfo(device, out var memory) == 0 ? (long)memory.Total : 0;
        return (name, total);
    }
}

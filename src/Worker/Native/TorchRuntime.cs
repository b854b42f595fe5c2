using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Orchestrator.Worker.Native;

/// <summary>
/// Loads libtorch once per process and picks the device. By default TorchSharp's bundled libtorch
/// (CPU) is used; with a libtorch folder (an installed PyTorch's <c>torch/lib</c>, via
/// <c>--libtorch-dir</c> or <see cref="LibTorchDirVariable"/>) that libtorch is loaded instead, which
/// is how a worker image reuses a CUDA-enabled PyTorch base image.
/// </summary>
public static class TorchRuntime
{
    /// <summary>Environment variable naming a libtorch folder (PyTorch's torch/lib).</summary>
    public const string LibTorchDirVariable = Orchestrator.Configuration.EnvironmentVariables.LibTorchDir;

    /// <summary>Optional path of libLibTorchSharp.so to load with an external libtorch.</summary>
    public const string LibTorchSharpVariable = "LIBTORCHSHARP";

    // Load order matters: each library resolves symbols of the ones before it.
    private static readonly string[] LibTorchLibraries =
        ["libc10.so", "libc10_cuda.so", "libtorch_cpu.so", "libtorch_cuda.so", "libtorch.so"];

    private static readonly Lock Gate = new();
    private static string? _loadedFrom;

    /// <summary>Where libtorch was loaded from: "bundled" or a folder.</summary>
    public static string? LoadedFrom => _loadedFrom;

    /// <summary>
    /// Loads libtorch (idempotent). <paramref name="libTorchDir"/> falls back to
    /// <see cref="LibTorchDirVariable"/>, then to the TORCH_LIB variable set by GPU launch scripts.
    /// </summary>
    public static void Initialize(string? libTorchDir = null)
    {
        lock (Gate)
        {
            if (_loadedFrom is not null) return;
            libTorchDir ??= Environment.GetEnvironmentVariable(LibTorchDirVariable);
            if (string.IsNullOrEmpty(libTorchDir)) libTorchDir = Environment.GetEnvironmentVariable("TORCH_LIB");
            if (!string.IsNullOrEmpty(libTorchDir))
            {
                LoadExternal(libTorchDir);
                _loadedFrom = libTorchDir;
            }
            else
            {
                _loadedFrom = "bundled";
            }
            // Touch the native backend now so a load failure surfaces here, with a clear message.
            try
            {
                _ = torch.get_num_threads();
            }
            catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or NotSupportedException)
            {
                _loadedFrom = null;
                throw new InvalidOperationException(
                    $"libtorch could not be loaded ({Innermost(e).Message}). Build with the repository's build (it patches TorchSharp for this system), or pass --libtorch-dir with PyTorch's torch/lib folder.", e);
            }
        }
    }

    private static void LoadExternal(string dir)
    {
        if (!Directory.Exists(dir))
            throw new InvalidOperationException($"--libtorch-dir {dir}: no such folder");
        foreach (var name in LibTorchLibraries)
        {
            var path = Path.Combine(dir, name);
            if (File.Exists(path)) NativeLibrary.Load(path);
            else if (name is "libc10.so" or "libtorch_cpu.so" or "libtorch.so")
                throw new InvalidOperationException($"--libtorch-dir {dir}: {name} is missing; point it at PyTorch's torch/lib folder");
        }
        var bridge = Environment.GetEnvironmentVariable(LibTorchSharpVariable);
        if (string.IsNullOrEmpty(bridge))
        {
            var baseDir = AppContext.BaseDirectory;
            bridge = new[] { Path.Combine(baseDir, "runtimes", "linux-x64", "native", "libLibTorchSharp.so"), Path.Combine(baseDir, "libLibTorchSharp.so") }
                .FirstOrDefault(File.Exists);
        }
        if (bridge is null || !File.Exists(bridge))
            throw new InvalidOperationException($"libLibTorchSharp.so not found beside the program; set {LibTorchSharpVariable} to its path");
        NativeLibrary.Load(bridge);
    }

    /// <summary>Resolves auto|cpu|cuda|cuda:N to a device; auto is CUDA when available.</summary>
    public static Device ResolveDevice(string? requested)
    {
        Initialize();
        var r = (requested ?? "auto").Trim().ToLowerInvariant();
        if (r == "auto")
        {
            return TryCuda() ? torch.CUDA : torch.CPU;
        }
        if (r == "cpu") return torch.CPU;
        if (r.StartsWith("cuda", StringComparison.Ordinal))
        {
            if (!TryCuda())
                throw new InvalidOperationException("--device cuda: CUDA is not available (a CPU-only libtorch, or no GPU); use --device cpu or --libtorch-dir with a CUDA-enabled PyTorch");
            return torch.device(r);
        }
        throw new ArgumentException($"--device {requested}: expected auto, cpu, cuda or cuda:N");
    }

    private static bool TryCuda()
    {
        try
        {
            if (_loadedFrom != "bundled") torch.InitializeDeviceType(DeviceType.CUDA);
            return torch.cuda.is_available();
        }
        catch (Exception e) when (e is InvalidOperationException or NotSupportedException or ExternalException)
        {
            return false;
        }
    }

    /// <summary>Seeds every generator a run uses (CPU, and CUDA where present).</summary>
    public static void Seed(long seed)
    {
        torch.manual_seed(seed);
        if (torch.cuda.is_available()) torch.cuda.manual_seed_all(seed);
    }

    private static Exception Innermost(Exception e)
    {
        while (e.InnerException is not null) e = e.InnerException;
        return e;
    }
}

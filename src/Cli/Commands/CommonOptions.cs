using System.CommandLine;

namespace Orchestrator.Cli.Commands;

/// <summary>Options several commands share, with one wording everywhere.</summary>
internal static class CommonOptions
{
    public static Option<string> Device() => new("--device")
    {
        Description = "Where to train: auto (CUDA when available), cpu, cuda or cuda:N.",
        DefaultValueFactory = _ => "auto",
        HelpName = "auto|cpu|cuda",
    };

    public static Option<string?> LibTorchDir() => new("--libtorch-dir")
    {
        Description = "Load libtorch from this folder (an installed PyTorch's torch/lib, e.g. for CUDA) instead of the bundled CPU build. Also: ORCH_LIBTORCH_DIR.",
        HelpName = "DIR",
    };

    public static Option<bool> Json() => new("--json")
    {
        Description = "Machine-readable output: JSON lines, the last line one summary object.",
    };

    public static Option<string?> DataDir() => new("--data-dir")
    {
        Description = "Folder holding the data set's files (default: the cache, then /usr/share/datasets, then download).",
        HelpName = "DIR",
    };
}

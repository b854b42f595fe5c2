using System.CommandLine;

namespace Orchestrator.Cli.Commands;

/// <summary>Options several commands share, with one wording everywhere.</summary>
internal static class CommonOptions
{
    public static Option<string> Device()
    {
        var option = new Option<string>("--device")
        {
            Description = "Where to train: auto (CUDA when available), cpu, cuda or cuda:N.",
            DefaultValueFactory = _ => "auto",
            HelpName = "auto|cpu|cuda",
        };
        // Checked as the command line is read: a typo never starts anything.
        option.Validators.Add(r =>
        {
            var value = r.GetValueOrDefault<string>()?.Trim().ToLowerInvariant() ?? "";
            var valid = value is "auto" or "cpu" or "cuda" || (value.StartsWith("cuda:", StringComparison.Ordinal)
                && int.TryParse(value.AsSpan(5), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out _));
            if (!valid) r.AddError($"--device {r.GetValueOrDefault<string>()}: expected auto, cpu, cuda or cuda:N");
        });
        return option;
    }

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

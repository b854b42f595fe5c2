namespace Orchestrator.Cli.Output;

/// <summary>
/// A font for plot text. Our SkiaSharp native build has no fontconfig, so it cannot find system
/// fonts by family name and would draw no text at all: the first of a few common font files found
/// is registered with ScottPlot by path instead.
/// </summary>
internal static class PlotFont
{
    private static readonly string[] Candidates =
    [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/Library/Fonts/Arial.ttf",
        "C:/Windows/Fonts/arial.ttf",
    ];

    private static readonly Lazy<string?> Registered = new(() =>
    {
        var file = Environment.GetEnvironmentVariable(Orchestrator.Configuration.EnvironmentVariables.PlotFont) is { Length: > 0 } env && File.Exists(env)
            ? env
            : Candidates.FirstOrDefault(File.Exists);
        if (file is null) return null;
        const string name = "orch-plot-sans";
        ScottPlot.Fonts.AddFontFile(name, file);
        return name;
    });

    /// <summary>The registered family name, or null when no font file was found (plots then carry no text).</summary>
    public static string? Name => Registered.Value;
}

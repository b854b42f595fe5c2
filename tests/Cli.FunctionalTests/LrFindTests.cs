using SkiaSharp;

namespace Orchestrator.Cli.FunctionalTests;

/// <summary>
/// One LR range test on a Fashion-MNIST subset, then one epoch of training at the rate it
/// suggested, shared by the tests that read them.
/// </summary>
public sealed class FashionLrFind : IDisposable
{
    // Enough images that one epoch at a good rate passes 0.85; small enough for a CPU test.
    private static readonly string[] Data = ["--dataset", "fashion-mnist", "--model", "simple-cnn", "--batch-size", "64",
        "--limit-train", "24000", "--limit-test", "2000"];

    public FashionLrFind()
    {
        Dir = Directory.CreateTempSubdirectory("orch-lrfind-").FullName;
        Find = OrchProcess.Run(Dir, [.. new[] { "lr-find" }, .. Data, "--plot", "plots/lr.png", "--json"]);
        if (Find.ExitCode != 0) return;
        Suggested = Find.LastJson.GetProperty("suggested_lr").GetDouble();
        Train = OrchProcess.Run(Dir, [.. new[] { "train" }, .. Data, "--epochs", "1",
            "--lr", Suggested.ToString("R", System.Globalization.CultureInfo.InvariantCulture), "--out", "run", "--json"]);
    }

    public string Dir { get; }
    public OrchProcess.Result Find { get; }
    public double Suggested { get; }
    public OrchProcess.Result? Train { get; }

    public void Dispose() => Directory.Delete(Dir, recursive: true);
}

public sealed class LrFindTests(FashionLrFind run) : IClassFixture<FashionLrFind>
{
    [Fact]
    public void Lr_find_ends_with_a_json_summary_and_a_line_per_step()
    {
        Assert.True(run.Find.ExitCode == 0, run.Find.ToString());
        var s = run.Find.LastJson;
        Assert.Equal("summary", s.GetProperty("type").GetString());
        var minLoss = s.GetProperty("min_loss_lr").GetDouble();
        Assert.Equal(minLoss / 10, s.GetProperty("suggested_lr").GetDouble(), 12);
        Assert.InRange(minLoss, 1e-7, 10);
        Assert.Equal(Path.Combine(run.Dir, "plots", "lr.png"), s.GetProperty("plot").GetString());
        var steps = run.Find.StdOut.Split('\n').Count(l => l.Contains("\"type\":\"step\"", StringComparison.Ordinal));
        Assert.Equal(s.GetProperty("steps").GetInt32(), steps);
        // The default ramp ends at 10, far past where this model diverges.
        Assert.True(s.GetProperty("diverged").GetBoolean(), run.Find.StdOut);
        Assert.True(steps is >= 10 and < 200, $"{steps} steps");
    }

    [Fact]
    public void One_epoch_at_the_suggested_rate_reaches_85_percent()
    {
        Assert.True(run.Train is { ExitCode: 0 }, run.Train?.ToString() ?? run.Find.ToString());
        var accuracy = run.Train!.LastJson.GetProperty("test_accuracy").GetDouble();
        Assert.True(accuracy >= 0.85, $"test accuracy {accuracy} after one epoch at the suggested rate {run.Suggested}");
    }

    [Fact]
    public void The_plot_is_a_png_with_the_loss_curve_drawn_on_it()
    {
        Assert.True(run.Find.ExitCode == 0, run.Find.ToString());
        using var bitmap = SKBitmap.Decode(Path.Combine(run.Dir, "plots", "lr.png"));
        Assert.NotNull(bitmap);
        Assert.Equal((900, 560), (bitmap.Width, bitmap.Height));
        var colours = new HashSet<uint>();
        int curve = 0, suggestion = 0;
        for (var y = 0; y < bitmap.Height; y++)
        for (var x = 0; x < bitmap.Width; x++)
        {
            var c = bitmap.GetPixel(x, y);
            colours.Add((uint)c);
            if (Near(c, 0x1F, 0x77, 0xB4)) curve++;   // the smoothed-loss line
            if (Near(c, 0xD6, 0x27, 0x28)) suggestion++; // the dashed line at the suggested rate
        }
        Assert.True(colours.Count > 20, $"only {colours.Count} colours: a blank image?");
        // A 3 px line across most of a 900 px wide plot covers well over a thousand pixels.
        Assert.True(curve > 1000, $"{curve} pixels of the curve's colour");
        Assert.True(suggestion > 200, $"{suggestion} pixels of the suggestion line's colour");
    }

    private static bool Near(SKColor c, byte r, byte g, byte b) =>
        Math.Abs(c.Red - r) < 24 && Math.Abs(c.Green - g) < 24 && Math.Abs(c.Blue - b) < 24;
}

public sealed class LrFindErrorTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("orch-lrfind-err-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData("--start-lr", "1", "--end-lr", "0.1")]
    [InlineData("--start-lr", "0.1", "--end-lr", "0.1")]
    [InlineData("--steps", "5")]
    [InlineData("--start-lr", "0")]
    public void An_impossible_range_is_one_usage_error(params string[] args)
    {
        var r = OrchProcess.Run(_dir, [.. new[] { "lr-find", "--dataset", "fashion-mnist", "--limit-train", "100" }, .. args]);
        var line = OrchProcess.AssertOneLineError(r, 2);
        Assert.Contains(args[^2], line);
        Assert.False(File.Exists(Path.Combine(_dir, "lr-find.png")));
    }

    [Fact]
    public void Lr_find_has_no_epochs_or_schedule_options()
    {
        var r = OrchProcess.Run(_dir, "lr-find", "--epochs", "3");
        var line = OrchProcess.AssertOneLineError(r, 2);
        Assert.Contains("--epochs", line);
    }
}

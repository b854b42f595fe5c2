using Orchestrator.Cli.Output;
using Orchestrator.TensorBoard;
using Orchestrator.TestSupport;
using SkiaSharp;

namespace Orchestrator.Cli.FunctionalTests;

/// <summary>
/// `orch plot` against a real coordinator serving a finished random search (log-uniform and
/// categorical parameters). Its trials prune, so the same sweep shows the sparsity metric going
/// from the workers through the coordinator to `orch tensorboard`.
/// </summary>
[Collection(EndToEnd.Name)]
public sealed class PlotTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("orch-plot-").FullName;

    private const string Sweep = """
        name: plot-me
        data: { name: fashion-mnist, limitTrain: 600, limitTest: 200 }
        model: { name: simple-cnn }
        trial:
          epochs: 2
          batchSize: 64
          pruning: { sparsity: 0.5, frequency: 5 }
        parameters:
          optimizer.lr: { min: 0.005, max: 0.2, distribution: log-uniform }
          schedule.name: { values: [cosine, constant] }
        search: { method: random, maxTrials: 3, parallelTrials: 2, seed: 3 }
        """;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task A_finished_sweep_is_drawn_as_learning_curves_and_parallel_coordinates()
    {
        await using var sweep = FinishedSweep.Start(_dir, Sweep);
        var plot = await sweep.RunAsync("plot", sweep.Id, "--out", "plots", "--top", "2", "--json");
        Assert.True(plot.ExitCode == 0, plot.ToString());
        var summary = plot.LastJson;
        Assert.Equal(3, summary.GetProperty("trials").GetInt32());
        Assert.Equal(2, summary.GetProperty("curves").GetInt32());

        var curves = Pixels(summary.GetProperty("learning_curves").GetString()!);
        Assert.Equal(Path.Combine(_dir, "plots", "learning-curves.png"), summary.GetProperty("learning_curves").GetString());
        Assert.True(curves.Colours > 20, $"only {curves.Colours} colours: a blank image?");
        // The best trial's curve (3 px, from epoch 1 to 2 across the plot) and the runner-up's (palette blue).
        Assert.True(curves.Count(SweepPlots.BestHex) > 500, $"{curves.Count(SweepPlots.BestHex)} pixels of the best curve");
        Assert.True(curves.Count("#1F77B4") > 300, $"{curves.Count("#1F77B4")} pixels of the second curve");

        var parallel = Pixels(summary.GetProperty("parallel_coordinates").GetString()!);
        Assert.True(parallel.Colours > 20, $"only {parallel.Colours} colours: a blank image?");
        // The best trial's line crosses all three axes (lr, schedule, objective).
        Assert.True(parallel.Count(SweepPlots.BestHex) > 800, $"{parallel.Count(SweepPlots.BestHex)} pixels of the best trial's line");

        // Each trial reported its sparsity every epoch: 0.5 once pruning ended with epoch 1.
        var export = await sweep.RunAsync("tensorboard", sweep.Id, "--out", "tb");
        Assert.True(export.ExitCode == 0, export.ToString());
        foreach (var run in Directory.GetDirectories(Path.Combine(_dir, "tb"), "trial-*"))
        {
            var sparsity = TensorBoardEvents.Scalars(TensorBoardEvents.ReadDir(run), TensorBoardTags.For("sparsity"));
            Assert.Equal([1L, 2L], sparsity.Keys);
            Assert.Equal(0.5, sparsity[2], 3);
        }

        // An unknown sweep is one clear error from the coordinator.
        var unknown = await sweep.RunAsync("plot", "sw-nope", "--out", "plots");
        Assert.Contains("sw-nope", OrchProcess.AssertOneLineError(unknown, 1));
    }

    [Fact]
    public void A_top_of_zero_is_a_usage_error()
    {
        var r = OrchProcess.Run(_dir, "plot", "sw-1", "--out", "plots", "--top", "0");
        Assert.Contains("--top must be at least 1", OrchProcess.AssertOneLineError(r, 2));
    }

    private sealed record Picture(int Colours, Dictionary<uint, int> Histogram)
    {
        public int Count(string hex)
        {
            var want = SKColor.Parse(hex);
            return Histogram.Where(kv => Near(new SKColor(kv.Key), want)).Sum(kv => kv.Value);
        }

        private static bool Near(SKColor c, SKColor w) =>
            Math.Abs(c.Red - w.Red) < 24 && Math.Abs(c.Green - w.Green) < 24 && Math.Abs(c.Blue - w.Blue) < 24;
    }

    /// <summary>Decodes a PNG of the plots' size and counts its pixels by colour.</summary>
    private static Picture Pixels(string path)
    {
        using var bitmap = SKBitmap.Decode(path);
        Assert.NotNull(bitmap);
        Assert.Equal((SweepPlots.Width, SweepPlots.Height), (bitmap.Width, bitmap.Height));
        var histogram = new Dictionary<uint, int>();
        for (var y = 0; y < bitmap.Height; y++)
        for (var x = 0; x < bitmap.Width; x++)
        {
            var c = (uint)bitmap.GetPixel(x, y);
            histogram[c] = histogram.GetValueOrDefault(c) + 1;
        }
        return new Picture(histogram.Count, histogram);
    }
}

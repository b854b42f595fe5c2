using System.Diagnostics;
using System.Globalization;
using System.Text;
using Orchestrator.Data;
using Orchestrator.TestSupport;
using Orchestrator.Trials;

namespace Orchestrator.Cli.FunctionalTests;

/// <summary>
/// examples/plugins built as a user builds it (dotnet build into plugins/), and its CSV data set
/// written from real Fashion-MNIST images: what the plug-in tests run sweeps over.
/// </summary>
internal static class ExamplePlugin
{
    /// <summary>Builds the example plug-in into <paramref name="workDir"/>/plugins and writes data/csv-fashion; returns the example sweep's text.</summary>
    public static string Prepare(string workDir, int trainImages = 2000, int testImages = 500)
    {
        var project = Path.Combine(RepositoryRoot.Path, "examples", "plugins", "MyModels", "MyModels.csproj");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "build", project, "-c", "Release", "-o", Path.Combine(workDir, "plugins"), "-nologo", "-v", "q", "-tl:off" })
            psi.ArgumentList.Add(a);
        using (var build = Process.Start(psi)!)
        {
            var stdout = build.StandardOutput.ReadToEndAsync();
            var stderr = build.StandardError.ReadToEndAsync();
            Assert.True(build.WaitForExit(TimeSpan.FromMinutes(5)), "building the example plug-in took over 5 minutes");
            Assert.True(build.ExitCode == 0, $"dotnet build {project} failed:\n{stdout.Result}\n{stderr.Result}");
        }
        Assert.True(File.Exists(Path.Combine(workDir, "plugins", "MyModels.dll")));

        var data = DatasetLoader.Load(new DataSpec { Name = "fashion-mnist", Download = false, LimitTrain = trainImages, LimitTest = testImages }, 0, null, CancellationToken.None);
        var dir = Directory.CreateDirectory(Path.Combine(workDir, "data", "csv-fashion")).FullName;
        WriteCsv(Path.Combine(dir, "train.csv"), data.Train, header: true);
        WriteCsv(Path.Combine(dir, "test.csv"), data.Validation, header: false);
        File.WriteAllLines(Path.Combine(dir, "classes.txt"), data.Info.Classes);
        return File.ReadAllText(Path.Combine(RepositoryRoot.Path, "examples", "plugins", "sweep.yaml"));
    }

    private static void WriteCsv(string path, IImageDataset images, bool header)
    {
        var text = new StringBuilder();
        if (header) text.Append("label,").AppendJoin(',', Enumerable.Range(0, images.Shape.Size).Select(i => "p" + i.ToString(CultureInfo.InvariantCulture))).Append('\n');
        var pixels = new byte[images.Shape.Size];
        for (var i = 0; i < images.Count; i++)
        {
            images.CopyImage(i, pixels);
            text.Append(images.GetLabel(i).ToString(CultureInfo.InvariantCulture)).Append(',').AppendJoin(',', pixels).Append('\n');
        }
        File.WriteAllText(path, text.ToString());
    }
}

using System.Globalization;
using Orchestrator.TestSupport;

namespace Orchestrator.Cli.FunctionalTests;

/// <summary>
/// Plug-ins shipped through the coordinator: `orch submit` uploads the example plug-in, `orch worker`
/// processes started in folders that never held it fetch, verify and load it, and the best checkpoint
/// downloaded with `orch best --download` evaluates, through the plug-in, to the metric the sweep reported.
/// </summary>
[Collection(EndToEnd.Name)]
public sealed class PluginShippingTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("orch-ship-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task Workers_that_never_saw_a_plugin_fetch_it_from_the_coordinator_and_the_downloaded_best_checkpoint_evaluates_to_the_reported_metric()
    {
        var user = Directory.CreateDirectory(Path.Combine(_dir, "user")).FullName;
        // The data is on a shared volume (an absolute path every worker sees); the plug-in is only in the user's folder.
        var sweep = ExamplePlugin.Prepare(user).Replace("dir: data/csv-fashion", $"dir: {Path.Combine(user, "data", "csv-fashion")}", StringComparison.Ordinal);
        File.WriteAllText(Path.Combine(user, "sweep.yaml"), sweep);

        var port = RedisServer.FreePort();
        var address = $"http://127.0.0.1:{port.ToString(CultureInfo.InvariantCulture)}";
        var coordinatorDir = Directory.CreateDirectory(Path.Combine(_dir, "coordinator")).FullName;
        await using var coordinator = OrchService.Start(coordinatorDir, "coordinator", "--state-dir", "state", "--port", port.ToString(CultureInfo.InvariantCulture), "--gradient-port", "0");
        var workers = new List<OrchService>();
        try
        {
            foreach (var id in new[] { "w1", "w2" })
            {
                var home = Directory.CreateDirectory(Path.Combine(_dir, id)).FullName;
                workers.Add(OrchService.Start(home, "worker", "--coordinator", address, "--id", id, "--threads", "1", "--work-dir", Path.Combine(home, "work")));
            }

            OrchProcess.Result submit;
            var deadline = DateTime.UtcNow.AddSeconds(60);
            do
            {
                submit = await Task.Run(() => OrchProcess.Run(user, "submit", "sweep.yaml", "--coordinator", address, "--watch", "--json"));
                if (submit.ExitCode == 0 || DateTime.UtcNow > deadline || coordinator.HasExited || submit.StdOut.Contains("\"sweep\"", StringComparison.Ordinal)) break;
                await Task.Delay(500);
            }
            while (true);
            var logs = $"\ncoordinator:\n{coordinator.Output}\n" + string.Join("\n", workers.Select(w => w.Output));
            Assert.True(submit.ExitCode == 0, submit + logs);
            var final = submit.LastJson;
            Assert.Equal("completed", final.GetProperty("state").GetString());
            Assert.Equal(2, final.GetProperty("trials_completed").GetInt32());
            var best = final.GetProperty("best_metric").GetDouble();
            Assert.True(best > 0.4, $"best accuracy {best}" + logs);

            // Each worker holds the plug-in only in its cache of shipped bundles, verified there.
            var fetched = Directory.GetFiles(_dir, "MyModels.dll", SearchOption.AllDirectories)
                .Where(f => f.StartsWith(Path.Combine(_dir, "w"), StringComparison.Ordinal)).ToList();
            Assert.NotEmpty(fetched);
            Assert.All(fetched, f => Assert.Contains($"{Path.DirectorySeparatorChar}work{Path.DirectorySeparatorChar}plugins{Path.DirectorySeparatorChar}", f));

            var sweepId = final.GetProperty("sweep").GetString()!;
            var download = OrchProcess.Run(user, "best", sweepId, "--download", "best.ckpt", "--coordinator", address, "--json");
            Assert.True(download.ExitCode == 0, download + logs);
            // The checkpoint's trial names the shipped bundle; --plugin points at the user's own build of it.
            var eval = OrchProcess.Run(user, "eval", "--checkpoint", "best.ckpt", "--plugin", "plugins", "--json");
            Assert.True(eval.ExitCode == 0, eval.ToString());
            Assert.Equal(best, eval.LastJson.GetProperty("accuracy").GetDouble(), 6);
        }
        finally
        {
            foreach (var w in workers) await w.DisposeAsync();
        }
    }

    [Fact]
    public void Submit_rewrites_only_the_plugin_paths_and_keeps_the_rest_of_the_file_as_written()
    {
        const string yaml = """
            name: s   # a comment
            data:
              plugin: plugins/MyModels.dll
              name: csv-images
            model: { plugin: 'plugins/MyModels.dll', name: tiny-net }
            trial:
              metrics: [{ plugin: plugins/MyModels.dll, name: macro-f1 }]
            """;
        var reference = "bundle:" + new string('c', 64) + "/MyModels.dll";
        var rewritten = Remote.PluginShipping.Rewrite(yaml, new Dictionary<string, string> { ["plugins/MyModels.dll"] = reference });
        Assert.Equal(yaml.Replace("plugins/MyModels.dll", "@", StringComparison.Ordinal).Replace("'@'", "@", StringComparison.Ordinal)
            .Replace("@", $"\"{reference}\"", StringComparison.Ordinal), rewritten);
    }
}

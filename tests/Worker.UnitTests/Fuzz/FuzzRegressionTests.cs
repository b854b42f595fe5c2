using Orchestrator.Fuzz;
using Orchestrator.TestSupport;

namespace Orchestrator.Worker.UnitTests.Fuzz;

/// <summary>
/// The fuzz targets (fuzz/run.sh) as ordinary tests: every seed of fuzz/corpus and every input
/// that once crashed a parser (fuzz/regressions) parses, or fails with the parser's own error.
/// </summary>
public sealed class FuzzRegressionTests
{
    public static TheoryData<string, string> Inputs()
    {
        var data = new TheoryData<string, string>();
        foreach (var folder in new[] { "corpus", "regressions" })
        {
            var root = Path.Combine(RepositoryRoot.Path, "fuzz", folder);
            if (!Directory.Exists(root)) continue;
            foreach (var dir in Directory.GetDirectories(root).Order(StringComparer.Ordinal))
                foreach (var file in Directory.GetFiles(dir).Order(StringComparer.Ordinal))
                    data.Add(Path.GetFileName(dir), Path.GetRelativePath(RepositoryRoot.Path, file));
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Inputs))]
    public void A_saved_input_parses_or_fails_with_the_parser_s_own_error(string target, string file)
    {
        Assert.Contains(target, FuzzTargets.Names);
        FuzzTargets.Run(target, File.ReadAllBytes(Path.Combine(RepositoryRoot.Path, file)));
    }

    [Fact]
    public void The_generated_seeds_parse_and_the_targets_refuse_what_they_must()
    {
        var dir = Directory.CreateTempSubdirectory("orch-fuzz-seeds-").FullName;
        try
        {
            FuzzTargets.WriteSeeds(dir);
            foreach (var target in new[] { "checkpoint", "gradient-hello" })
            {
                var seeds = Directory.GetFiles(Path.Combine(dir, target));
                Assert.NotEmpty(seeds);
                foreach (var seed in seeds) FuzzTargets.Run(target, File.ReadAllBytes(seed));
            }
            // The checkpoint target repairs the checksum, so a damaged body reaches the content checks.
            var checkpoint = File.ReadAllBytes(Directory.GetFiles(Path.Combine(dir, "checkpoint"))[0]);
            checkpoint[20] ^= 0xFF;
            Assert.False(FuzzTargets.WithChecksum(checkpoint).AsSpan(^32).SequenceEqual(checkpoint.AsSpan(^32)));
            FuzzTargets.Run("checkpoint", checkpoint);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
        // A target that does not exist is a mistake of the caller, not a parser's error.
        Assert.Throws<ArgumentException>(() => FuzzTargets.Run("nonsense", []));
    }

    [Fact]
    public void Yaml_that_once_crashed_the_sweep_parser_is_one_error_naming_the_file_and_line()
    {
        var text = File.ReadAllText(Path.Combine(RepositoryRoot.Path, "fuzz", "regressions", "sweep", "unsupported-event-1.yaml"));
        var e = Assert.Throws<Specs.SpecException>(() => Sweeps.ValidatedSweep.Parse(text, "sweep.yaml", new Sweeps.SweepLimits(1000, 8, 1000)));
        Assert.StartsWith("sweep.yaml:", e.Message, StringComparison.Ordinal);
        Assert.Contains("malformed YAML", e.Message, StringComparison.Ordinal);
    }
}

using System.Text;
using Orchestrator.Specs;
using Orchestrator.Sweeps;

namespace Orchestrator.Shared.UnitTests.Specs;

/// <summary>Pathological YAML is refused with one error before anything is built from it.</summary>
public class YamlLimitsTests
{
    private static SpecException Refused(string text) =>
        Assert.Throws<SpecException>(() => ValidatedSweep.Parse(text, "sweep.yaml", new SweepLimits()));

    [Theory]
    [InlineData("[", "]")]
    [InlineData("{a: ", "}")]
    public void Deep_nesting_is_refused_instead_of_overflowing_the_stack(string open, string close)
    {
        // 100,000 levels: the recursive readers would overflow the stack and kill the process.
        var text = "name: deep\nparameters: " + string.Concat(Enumerable.Repeat(open, 100_000)) + "1" + string.Concat(Enumerable.Repeat(close, 100_000)) + "\n";
        var e = Refused(text);
        Assert.Contains($"nested more than {YamlSpec.MaxDepth} levels deep", e.Message, StringComparison.Ordinal);
        Assert.StartsWith("sweep.yaml:2:", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Deep_block_nesting_is_refused_too()
    {
        var text = new StringBuilder("name: deep\nparameters:\n");
        for (var i = 1; i <= 1000; i++) text.Append(' ', i).Append("k:\n");
        var e = Refused(text.ToString());
        Assert.Contains($"nested more than {YamlSpec.MaxDepth} levels deep", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Nesting_within_the_limit_is_read()
    {
        var text = "name: ok\nparameters:\n  optimizer.lr: { values: " + string.Concat(Enumerable.Repeat("[", 10)) + "0.1" + string.Concat(Enumerable.Repeat("]", 10)) + " }\n";
        var e = Refused(text);
        // Read, then refused for what it says (a nested list is no value), not for its depth.
        Assert.DoesNotContain("levels deep", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Alias_expansion_billion_laughs_is_refused_before_it_grows()
    {
        var text = new StringBuilder("name: lol\na0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for (var i = 1; i < 10; i++)
            text.Append($"a{i}: &a{i} [{string.Join(", ", Enumerable.Repeat($"*a{i - 1}", 9))}]\n");
        var before = GC.GetTotalAllocatedBytes();
        var e = Refused(text.ToString());
        Assert.Contains($"more than {YamlSpec.MaxNodes:N0} values once its aliases are expanded", e.Message, StringComparison.Ordinal);
        Assert.True(GC.GetTotalAllocatedBytes() - before < 100_000_000, "the aliases were expanded");
    }

    [Fact]
    public void An_oversized_text_is_refused_by_its_size()
    {
        var e = Refused("name: big\n#" + new string('x', YamlSpec.MaxLength) + "\n");
        Assert.Contains("a spec file is at most 1,048,576", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_folder_or_an_oversized_file_is_named_for_what_it_is()
    {
        var dir = Directory.CreateTempSubdirectory("orch-yaml-").FullName;
        try
        {
            Assert.Equal($"{dir}: is a folder, not a spec file", Assert.Throws<SpecException>(() => YamlSpec.ReadFile(dir)).Message);
            var big = Path.Combine(dir, "big.yaml");
            File.WriteAllText(big, "name: big\n#" + new string('x', YamlSpec.MaxLength + 10));
            Assert.StartsWith($"{big}: 1,048,5", Assert.Throws<SpecException>(() => YamlSpec.ReadFile(big)).Message, StringComparison.Ordinal);
            Assert.Equal($"{Path.Combine(dir, "none.yaml")}: no such file", Assert.Throws<SpecException>(() => YamlSpec.ReadFile(Path.Combine(dir, "none.yaml"))).Message);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}

/// <summary>A value of the wrong kind names its field, in the file's terms rather than .NET's.</summary>
public class YamlWrongTypeTests
{
    [Theory]
    [InlineData("name: x\ntrial: { epochs: lots }\n", "sweep.yaml:2:18: trial.epochs: 'lots' is not a number")]
    [InlineData("name: x\ntrial: 5\n", "sweep.yaml:2:8: trial: expected a section of fields ({ name: value, … }), not a single value")]
    [InlineData("name: x\ntrial:\n  optimizer: sgd\n", "sweep.yaml:3:14: trial.optimizer: expected a section of fields ({ name: value, … }), not a single value")]
    [InlineData("name: x\nsearch: { maxTrials: [3] }\n", "sweep.yaml:2:22: search.maxTrials: expected a single value, not a list or a section")]
    [InlineData("name: x\ntrial: { checkpoint: { keepBest: maybe } }\n", "sweep.yaml:2:34: trial.checkpoint.keepBest: expected true or false")]
    public void A_wrong_type_is_one_line_naming_the_field(string text, string message)
    {
        var e = Assert.Throws<SpecException>(() => ValidatedSweep.Parse(text, "sweep.yaml", new SweepLimits()));
        Assert.Equal(message, e.Message);
        Assert.DoesNotContain("System.", e.Message, StringComparison.Ordinal);
    }
}

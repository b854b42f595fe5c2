using Orchestrator.Plugins;

namespace Orchestrator.Shared.UnitTests.Sweeps;

/// <summary>The shipped-plug-in reference and manifest: what a worker trusts is only what hashes right.</summary>
public class PluginBundleTests
{
    private static readonly string Sha = new('a', 64);

    [Fact]
    public void A_reference_names_the_manifests_hash_and_the_assembly()
    {
        var reference = PluginBundle.Reference(Sha, "MyModels.dll");
        Assert.Equal($"bundle:{Sha}/MyModels.dll", reference);
        Assert.True(PluginBundle.TryParse(reference, out var sha, out var assembly));
        Assert.Equal((Sha, "MyModels.dll"), (sha, assembly));
    }

    [Theory]
    [InlineData("plugins/MyModels.dll")]
    [InlineData("bundle:abc/MyModels.dll")]
    [InlineData("bundle:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/x.dll")]
    [InlineData("bundle:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/../x.dll")]
    [InlineData("bundle:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/")]
    public void Anything_else_is_not_a_bundle_reference(string plugin) => Assert.False(PluginBundle.TryParse(plugin, out _, out _));

    [Fact]
    public void A_manifest_round_trips_sorted_so_that_equal_bundles_hash_equally()
    {
        BundleFile[] files = [new("b.dll", Sha, 10), new("a.dll", new string('b', 64), 20)];
        var text = PluginBundle.WriteManifest(files);
        Assert.Equal(text, PluginBundle.WriteManifest(files.Reverse()));
        Assert.Equal([files[1], files[0]], PluginBundle.ReadManifest(text));
    }

    [Theory]
    [InlineData("xyz 10 a.dll\n", "line 1 is not 'sha256 size name'")]
    [InlineData("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa 10 ../evil.dll\n", "line 1")]
    [InlineData("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa -1 a.dll\n", "line 1")]
    [InlineData("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa 1 a.dll\naaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa 1 a.dll\n", "lists a file twice")]
    public void A_bad_manifest_is_refused_saying_what_is_wrong(string text, string problem) =>
        Assert.Contains(problem, Assert.Throws<InvalidDataException>(() => PluginBundle.ReadManifest(text)).Message);
}

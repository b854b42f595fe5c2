namespace Orchestrator.Data.Tests;

public sealed class QuotedTextTests
{
    [Fact]
    public void Plain_text_is_kept_as_it_is()
    {
        Assert.Equal("conv1.weight", QuotedText.Printable("conv1.weight"));
        Assert.Equal("größe ✓", QuotedText.Printable("größe ✓"));
        Assert.Equal("", QuotedText.Printable(null));
    }

    [Fact]
    public void Control_characters_and_undecodable_bytes_are_escaped_and_line_breaks_become_spaces()
    {
        Assert.Equal("a\\x00b\\x1b[31m c", QuotedText.Printable("a\0b\u001b[31m\nc"));
        Assert.Equal("x\\ufffdy", QuotedText.Printable("x\uFFFDy"));
        Assert.Equal("\\u200b", QuotedText.Printable("\u200B"));
    }

    [Fact]
    public void Long_text_is_cut()
    {
        var cut = QuotedText.Printable(new string('a', 1000), 20);
        Assert.Equal(new string('a', 20) + "...", cut);
    }
}

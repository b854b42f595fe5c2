using System.Text;

namespace Orchestrator.Data;

/// <summary>
/// Text taken from a file that may be damaged or foreign (a tensor name, a parser's message quoting
/// the input), made fit for a one-line error: control and non-printable characters become \xNN or
/// \uNNNN escapes and long text is cut, so a garbage file never prints binary bytes to a terminal.
/// </summary>
public static class QuotedText
{
    /// <summary>The longest quoted text kept (in characters) before it is cut with "...".</summary>
    public const int DefaultMaxLength = 160;

    public static string Printable(string? text, int maxLength = DefaultMaxLength)
    {
        if (string.IsNullOrEmpty(text)) return "";
        var builder = new StringBuilder(Math.Min(text.Length, maxLength) + 8);
        foreach (var rune in text.EnumerateRunes())
        {
            if (builder.Length >= maxLength)
            {
                builder.Append("...");
                break;
            }
            if (rune.Value is '\n' or '\r' or '\t') builder.Append(' ');
            else if (rune == Rune.ReplacementChar || Rune.IsControl(rune) || Rune.GetUnicodeCategory(rune)
                         is System.Globalization.UnicodeCategory.Format or System.Globalization.UnicodeCategory.PrivateUse
                         or System.Globalization.UnicodeCategory.Surrogate or System.Globalization.UnicodeCategory.OtherNotAssigned)
                builder.Append(rune.Value <= 0xFF ? $"\\x{rune.Value:x2}" : $"\\u{rune.Value:x4}");
            else builder.Append(rune.ToString());
        }
        return builder.ToString();
    }
}

using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace Orchestrator.Plugins;

/// <summary>One file of a shipped plug-in: its name beside the assembly, SHA-256 and size.</summary>
public sealed record BundleFile(string Name, string Sha256, long Size);

/// <summary>
/// How a plug-in travels from <c>orch submit</c> to the workers: every file (the assembly and its
/// dependencies) is stored by the coordinator under its SHA-256, and a manifest listing them (one
/// line per file: <c>sha256 size name</c>) is stored the same way. A sweep then names the plug-in
/// as <c>bundle:&lt;manifest sha256&gt;/MyModels.dll</c>: content-addressed, so a changed plug-in is
/// another bundle and a worker can verify every byte it loads.
/// </summary>
public static class PluginBundle
{
    /// <summary>The prefix of a shipped plug-in's reference.</summary>
    public const string Scheme = "bundle:";

    /// <summary>The most files one bundle may list.</summary>
    public const int MaxFiles = 256;

    /// <summary>The largest plug-in file the coordinator stores (bytes).</summary>
    public const long MaxFileBytes = 256L * 1024 * 1024;

    /// <summary>The reference a sweep uses for the bundle whose manifest hashes to <paramref name="manifestSha256"/>.</summary>
    public static string Reference(string manifestSha256, string assembly) => $"{Scheme}{manifestSha256}/{assembly}";

    /// <summary>Whether <paramref name="plugin"/> names a shipped bundle; if so, its manifest's hash and main assembly.</summary>
    public static bool TryParse(string? plugin, out string manifestSha256, out string assembly)
    {
        manifestSha256 = assembly = "";
        if (plugin is null || !plugin.StartsWith(Scheme, StringComparison.Ordinal)) return false;
        var rest = plugin[Scheme.Length..];
        var slash = rest.IndexOf('/', StringComparison.Ordinal);
        if (slash < 0 || !IsSha256(rest[..slash]) || !IsFileName(rest[(slash + 1)..])) return false;
        (manifestSha256, assembly) = (rest[..slash], rest[(slash + 1)..]);
        return true;
    }

    /// <summary>Whether <paramref name="text"/> is a lowercase hex SHA-256.</summary>
    public static bool IsSha256(string? text) => text is { Length: 64 } && text.All(c => char.IsAsciiDigit(c) || c is >= 'a' and <= 'f');

    /// <summary>A plain file name: no folders, no "..", nothing a path could escape with.</summary>
    public static bool IsFileName(string? name) =>
        !string.IsNullOrEmpty(name) && name.Length <= 255 && name is not "." and not ".." && name.IndexOfAny(['/', '\\', '\0', ':']) < 0;

    /// <summary>The manifest's text for <paramref name="files"/> (sorted by name, so equal bundles hash equally).</summary>
    public static string WriteManifest(IEnumerable<BundleFile> files)
    {
        var text = new StringBuilder();
        foreach (var f in files.OrderBy(f => f.Name, StringComparer.Ordinal))
            text.Append(f.Sha256).Append(' ').Append(f.Size.ToString(CultureInfo.InvariantCulture)).Append(' ').Append(f.Name).Append('\n');
        return text.ToString();
    }

    /// <summary>Reads a manifest; throws <see cref="InvalidDataException"/> saying which line is wrong.</summary>
    public static IReadOnlyList<BundleFile> ReadManifest(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var files = new List<BundleFile>();
        var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        if (lines.Length > MaxFiles) throw new InvalidDataException($"plug-in manifest lists {lines.Length} files, at most {MaxFiles} are allowed");
        for (var i = 0; i < lines.Length; i++)
        {
            var parts = lines[i].Split(' ', 3);
            if (parts.Length != 3 || !IsSha256(parts[0]) || !long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var size)
                || size > MaxFileBytes || !IsFileName(parts[2]))
                throw new InvalidDataException($"plug-in manifest line {i + 1} is not 'sha256 size name'");
            files.Add(new BundleFile(parts[2], parts[0], size));
        }
        if (files.Select(f => f.Name).Distinct(StringComparer.Ordinal).Count() != files.Count)
            throw new InvalidDataException("plug-in manifest lists a file twice");
        return files;
    }

    /// <summary>The lowercase hex SHA-256 of a file.</summary>
    public static string Sha256Of(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    /// <summary>The lowercase hex SHA-256 of some bytes.</summary>
    public static string Sha256Of(ReadOnlySpan<byte> bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));
}

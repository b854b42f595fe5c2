namespace Orchestrator.Data;

/// <summary>
/// The one rule for paths that cross the wire in data delivery (a manifest's file paths, an
/// imagefolder's folder): relative, '/'-separated, without <c>..</c>, <c>.</c> or empty segments.
/// Both sides check it: the coordinator so that a request cannot reach outside the folders it
/// serves, the worker so that a manifest cannot write outside its cache folder.
/// </summary>
public static class DataPaths
{
    /// <summary>Longest path accepted; real data set paths are far shorter.</summary>
    public const int MaxLength = 1024;

    /// <summary>Why <paramref name="path"/> is not a safe relative path, or null when it is.</summary>
    public static string? Problem(string? path)
    {
        if (string.IsNullOrEmpty(path)) return "the path is empty";
        if (path.Length > MaxLength) return $"the path is longer than {MaxLength} characters";
        if (path[0] == '/' || path.Contains('\\', StringComparison.Ordinal) || Path.IsPathRooted(path))
            return $"'{path}' is absolute or uses '\\'; paths are relative to the served folder, with '/'";
        if (path.Contains('\0', StringComparison.Ordinal))
            return $"'{path}' holds a character not allowed in a data path";
        foreach (var segment in path.Split('/'))
        {
            if (segment is "" or "." or "..")
                return $"'{path}' has a '{segment}' segment; paths may not leave the served folder";
        }
        return null;
    }

    /// <summary>Whether <paramref name="path"/> is a safe relative path.</summary>
    public static bool IsSafe(string? path) => Problem(path) is null;

    /// <summary>
    /// <paramref name="root"/> joined with the safe relative <paramref name="path"/>, checked once
    /// more after normalisation to lie inside <paramref name="root"/>.
    /// </summary>
    /// <exception cref="ArgumentException">The path is not safe.</exception>
    public static string Combine(string root, string path)
    {
        if (Problem(path) is { } problem) throw new ArgumentException(problem, nameof(path));
        var fullRoot = Path.TrimEndingDirectorySeparator(Path.GetFullPath(root));
        var full = Path.GetFullPath(Path.Combine(fullRoot, path));
        if (!full.StartsWith(fullRoot + Path.DirectorySeparatorChar, StringComparison.Ordinal))
            throw new ArgumentException($"'{path}' leaves {fullRoot}", nameof(path));
        return full;
    }

    /// <summary><paramref name="fullPath"/> relative to <paramref name="root"/>, with '/' separators.</summary>
    public static string Relative(string root, string fullPath) =>
        Path.GetRelativePath(root, fullPath).Replace(Path.DirectorySeparatorChar, '/');
}

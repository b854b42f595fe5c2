namespace Orchestrator.Data.Readers;

/// <summary>
/// Lists the images of an image folder's class folders, nested folders included, following symbolic
/// links to folders once. A link that leads back to a folder that contains it (a loop: the file
/// system would follow it until its link limit, listing the same images dozens of times) or into the
/// image folder's own tree (those images would be listed twice, possibly under another class) is a
/// <see cref="DataFormatException"/> naming the link; so is a second link to a folder already listed.
/// Links to folders elsewhere (images kept on another disk) are followed as ordinary folders.
/// </summary>
internal static class ImageFolderListing
{
    // What Linux allows in one path resolution (MAXSYMLINKS); a longer chain of links is a loop.
    private const int MaxLinkHops = 40;

    /// <summary>The images of each class folder (in <paramref name="folders"/> order), each list sorted ordinally.</summary>
    public static List<string[]> List(string root, IReadOnlyList<string> folders, Func<string, bool> isImage)
    {
        var rootReal = RealPath(root) ?? throw new DataFormatException(root, "symbolic link loop: the folder cannot be resolved");
        // Real folder -> the path it was first listed under.
        var listed = new Dictionary<string, string>(StringComparer.Ordinal) { [rootReal] = root };
        var result = new List<string[]>(folders.Count);
        foreach (var folder in folders)
        {
            var images = new List<string>();
            var path = Path.Combine(root, folder);
            Walk(path, Enter(path, rootReal, rootReal, listed), rootReal, listed, isImage, images);
            images.Sort(StringComparer.Ordinal);
            result.Add([.. images]);
        }
        return result;
    }

    private static void Walk(string dir, string real, string rootReal, Dictionary<string, string> listed, Func<string, bool> isImage, List<string> images)
    {
        // Depth-first with an explicit stack: a deep tree cannot overflow the thread's stack.
        var pending = new Stack<(string Path, string Real)>();
        pending.Push((dir, real));
        while (pending.TryPop(out var current))
        {
            foreach (var entry in new DirectoryInfo(current.Path).EnumerateFileSystemInfos())
            {
                var path = Path.Combine(current.Path, entry.Name);
                if (entry is DirectoryInfo) pending.Push((path, Enter(path, current.Real, rootReal, listed)));
                else if (isImage(path)) images.Add(path);
            }
        }
    }

    /// <summary>The real path of the folder <paramref name="path"/> in <paramref name="parentReal"/>, checked and recorded as listed.</summary>
    private static string Enter(string path, string parentReal, string rootReal, Dictionary<string, string> listed)
    {
        var real = Path.Combine(parentReal, Path.GetFileName(path));
        if (new DirectoryInfo(path).LinkTarget is { } target)
        {
            real = RealPath(path) ?? throw new DataFormatException(path, $"symbolic link loop: the chain of links from {target} does not end");
            if (Contains(real, parentReal))
                throw new DataFormatException(path, $"symbolic link loop: it points to {real}, a folder that contains it, so its images would be listed again and again");
            if (Contains(rootReal, real))
                throw new DataFormatException(path, $"symbolic link into the image folder itself (to {real}): its images would be listed twice, possibly under another class");
        }
        if (!listed.TryAdd(real, path))
            throw new DataFormatException(path, $"is the same folder as {listed[real]} (through a symbolic link): its images would be listed twice");
        return real;
    }

    /// <summary>True when <paramref name="inner"/> is <paramref name="outer"/> or inside it (both real paths).</summary>
    private static bool Contains(string outer, string inner) =>
        inner.Length >= outer.Length && inner.StartsWith(outer, StringComparison.Ordinal)
        && (inner.Length == outer.Length || inner[outer.Length] == Path.DirectorySeparatorChar || outer.EndsWith(Path.DirectorySeparatorChar));

    /// <summary>
    /// <paramref name="path"/> with every symbolic link along it resolved, as realpath(3) gives it; null
    /// when a chain of links does not end. .NET resolves a link's own target but not the links in its folders.
    /// </summary>
    internal static string? RealPath(string path)
    {
        var hops = 0;
        return RealPath(Path.GetFullPath(path), ref hops);
    }

    private static string? RealPath(string full, ref int hops)
    {
        var root = Path.GetPathRoot(full)!;
        var result = root;
        foreach (var part in full[root.Length..].Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries))
        {
            var next = Path.Combine(result, part);
            if (new FileInfo(next).LinkTarget is not { } target)
            {
                result = next;
                continue;
            }
            if (++hops > MaxLinkHops) return null;
            // A relative target is relative to the link's folder, whose real path is `result`.
            if (RealPath(Path.GetFullPath(target, result), ref hops) is not { } resolved) return null;
            result = resolved;
        }
        return result;
    }
}

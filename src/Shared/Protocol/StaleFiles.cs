using System.Diagnostics;
using System.Globalization;

namespace Orchestrator.Protocol;

/// <summary>Files a process names after its id (shared-memory segments, Unix sockets), so that a later process can remove those of one that was killed.</summary>
public static class StaleFiles
{
    /// <summary>
    /// Removes files named <c>{prefix}{pid}-…{suffix}</c> in <paramref name="folder"/> whose process
    /// no longer runs (left by a process killed before it could remove them). Returns how many.
    /// </summary>
    public static int Remove(string folder, string prefix, string suffix)
    {
        var removed = 0;
        try
        {
            foreach (var path in Directory.EnumerateFiles(folder, prefix + "*" + suffix))
            {
                var name = Path.GetFileName(path).AsSpan(prefix.Length);
                var dash = name.IndexOf('-');
                if (dash <= 0 || !int.TryParse(name[..dash], NumberStyles.None, CultureInfo.InvariantCulture, out var pid) || Alive(pid)) continue;
                try
                {
                    File.Delete(path);
                    removed++;
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    // Someone else's; leave it.
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // No folder to clean.
        }
        return removed;
    }

    private static bool Alive(int pid)
    {
        try
        {
            using var process = Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }
}

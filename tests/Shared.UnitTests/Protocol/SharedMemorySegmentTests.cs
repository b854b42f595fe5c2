using Orchestrator.Protocol;

namespace Orchestrator.Shared.UnitTests.Protocol;

[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class SharedMemorySegmentTests
{
    [Fact]
    public void A_segment_made_here_is_seen_by_a_second_mapping_and_unlinking_keeps_both_mappings()
    {
        using var made = SharedMemorySegment.Create(4096);
        Assert.StartsWith(SharedMemorySegment.Folder, made.Path, StringComparison.Ordinal);
        // Only this user may open it.
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(made.Path));
        using var opened = SharedMemorySegment.Open(made.Path, 4096);
        made.Unlink();
        Assert.False(File.Exists(made.Path));
        made.GetSpan()[4095] = 42;
        Assert.Equal(42, opened.GetSpan()[4095]);
    }

    [Fact]
    public void Only_files_named_as_segments_are_opened()
    {
        var path = Path.Combine(Path.GetTempPath(), "not-a-segment-" + Guid.NewGuid().ToString("N"));
        File.WriteAllBytes(path, new byte[16]);
        try
        {
            Assert.Throws<IOException>(() => SharedMemorySegment.Open(path, 16));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Stale_segments_of_processes_that_are_gone_are_removed_and_live_ones_kept()
    {
        var dead = Enumerable.Range(3_000_000, 1000).First(pid =>
        {
            try
            {
                using var p = System.Diagnostics.Process.GetProcessById(pid);
                return false;
            }
            catch (ArgumentException)
            {
                return true;
            }
        });
        var stale = Path.Combine(SharedMemorySegment.Folder, $"{SharedMemorySegment.Prefix}{dead}-{Guid.NewGuid():N}.shm");
        File.WriteAllBytes(stale, new byte[8]);
        using var live = SharedMemorySegment.Create(8);
        try
        {
            Assert.True(SharedMemorySegment.RemoveStale() >= 1);
            Assert.False(File.Exists(stale));
            Assert.True(File.Exists(live.Path));
        }
        finally
        {
            File.Delete(stale);
            live.Unlink();
        }
    }
}

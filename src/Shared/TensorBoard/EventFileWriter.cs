using System.Globalization;
using Google.Protobuf;
using Orchestrator.TensorBoard.Protos;

namespace Orchestrator.TensorBoard;

/// <summary>
/// Writes one TensorBoard event file (<c>events.out.tfevents.*</c>) in a run folder: the version
/// record first, then summaries, each flushed so that a running TensorBoard sees them at once.
/// </summary>
public sealed class EventFileWriter : IDisposable
{
    /// <summary>The version string TensorBoard expects in the first record.</summary>
    public const string FileVersion = "brain.Event:2";

    private readonly FileStream _file;

    public EventFileWriter(string runDir, DateTimeOffset? now = null)
    {
        Directory.CreateDirectory(runDir);
        var time = now ?? DateTimeOffset.UtcNow;
        // TensorBoard finds files by "tfevents" in the name and orders them by the timestamp after it.
        var name = string.Create(CultureInfo.InvariantCulture,
            $"events.out.tfevents.{time.ToUnixTimeSeconds()}.{Environment.MachineName}.{Environment.ProcessId}.{Guid.NewGuid().ToString("N")[..8]}");
        Path = System.IO.Path.Combine(runDir, name);
        _file = new FileStream(Path, FileMode.CreateNew, FileAccess.Write, FileShare.Read);
        Write(new Event { WallTime = Seconds(time), FileVersion = FileVersion, SourceMetadata = new SourceMetadata { Writer = "orchestrator" } });
    }

    /// <summary>The event file's path.</summary>
    public string Path { get; }

    /// <summary>Scalars at one step, as one event (simple values, which the scalars dashboard reads).</summary>
    public void WriteScalars(long step, IEnumerable<KeyValuePair<string, double>> values, DateTimeOffset? time = null)
    {
        var summary = new Summary();
        foreach (var (tag, value) in values)
        {
            if (double.IsFinite(value)) summary.Value.Add(new Summary.Types.Value { Tag = tag, SimpleValue = (float)value });
        }
        if (summary.Value.Count > 0) WriteSummary(step, summary, time);
    }

    public void WriteSummary(long step, Summary summary, DateTimeOffset? time = null) =>
        Write(new Event { WallTime = Seconds(time ?? DateTimeOffset.UtcNow), Step = step, Summary = summary });

    private void Write(Event e)
    {
        TfRecord.Write(_file, e.ToByteArray());
        _file.Flush();
    }

    private static double Seconds(DateTimeOffset t) => t.ToUnixTimeMilliseconds() / 1000.0;

    public void Dispose() => _file.Dispose();
}

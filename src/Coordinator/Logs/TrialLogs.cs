using System.Runtime.CompilerServices;
using Orchestrator.Coordinator.Domain;
using Orchestrator.Coordinator.State;

namespace Orchestrator.Coordinator.Logs;

/// <summary>
/// What trials print, kept with the trial: lines from workers are cut to a bounded length and
/// stored under the trial's fencing token, and only the last <see cref="MaxLinesKept"/> lines of
/// a trial are kept (a trial that prints without end cannot fill the state store). Readers get
/// the kept lines, and with follow the new ones until the trial ends.
/// </summary>
public sealed class TrialLogs(IStateStore store, TimeProvider clock)
{
    /// <summary>Lines kept per trial, over all its attempts; older ones are dropped as new ones come.</summary>
    public const int MaxLinesKept = 10_000;

    /// <summary>Characters kept of one line; the rest is replaced by <see cref="CutMark"/>.</summary>
    public const int MaxLineLength = 1_000;

    /// <summary>Ends a line that was cut.</summary>
    public const string CutMark = " …[cut]";

    /// <summary>Lines read from the store at a time, and sent in one message.</summary>
    public const int PageSize = 500;

    /// <summary>How often a follower looks for new lines.</summary>
    public TimeSpan FollowInterval { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>
    /// Stores lines a worker sent for a trial it holds under <paramref name="fencingToken"/>.
    /// False when the token is stale or the trial unknown (nothing stored).
    /// </summary>
    public async Task<bool> AppendAsync(string trialId, long fencingToken, IEnumerable<TrialLogLine> lines, CancellationToken ct)
    {
        var bounded = Bound(lines);
        if (bounded.Count == 0) return true;
        return await store.AppendTrialLogAsync(trialId, fencingToken, bounded, MaxLinesKept, ct).ConfigureAwait(false) == LogAppendResult.Appended;
    }

    /// <summary>
    /// One stored line per text line (a text with line breaks becomes several), each at most
    /// <see cref="MaxLineLength"/> characters plus <see cref="CutMark"/>, and at most
    /// <see cref="MaxLinesKept"/> lines (the last ones) from one message.
    /// </summary>
    public static IReadOnlyList<TrialLogLine> Bound(IEnumerable<TrialLogLine> lines)
    {
        var result = new List<TrialLogLine>();
        foreach (var line in lines)
        {
            foreach (var part in line.Text.Split('\n'))
            {
                var text = part.TrimEnd('\r');
                if (text.Length > MaxLineLength) text = string.Concat(text.AsSpan(0, MaxLineLength), CutMark);
                result.Add(line with { Seq = 0, Text = text });
            }
        }
        return result.Count > MaxLinesKept ? result[^MaxLinesKept..] : result;
    }

    /// <summary>
    /// The trial's kept lines after <paramref name="afterSeq"/>, page by page. With
    /// <paramref name="follow"/>, then the new lines as they are stored, until the trial has ended
    /// and its last lines are read.
    /// </summary>
    public async IAsyncEnumerable<IReadOnlyList<TrialLogLine>> ReadAsync(string trialId, long afterSeq, bool follow, [EnumeratorCancellation] CancellationToken ct)
    {
        var after = afterSeq;
        var graceRead = false;
        while (true)
        {
            // The state before the read: once a finished trial's lines are read, none are missing
            // (workers send a trial's lines before its outcome).
            var finished = follow && await store.GetTrialAsync(trialId, ct).ConfigureAwait(false) is null or { IsFinished: true };
            IReadOnlyList<TrialLogLine> page;
            do
            {
                page = await store.GetTrialLogAsync(trialId, after, PageSize, ct).ConfigureAwait(false);
                if (page.Count == 0) break;
                after = page[^1].Seq;
                yield return page;
            }
            while (page.Count == PageSize);
            if (!follow) yield break;
            // A trial stopped by the coordinator is marked ended before its worker's last lines
            // arrive: one more look after an interval picks them up.
            if (finished && graceRead) yield break;
            graceRead = finished;
            await Task.Delay(FollowInterval, clock, ct).ConfigureAwait(false);
        }
    }
}

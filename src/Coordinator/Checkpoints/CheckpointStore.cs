using Microsoft.Extensions.Options;
using Orchestrator.Checkpoints;

namespace Orchestrator.Coordinator.Checkpoints;

/// <summary>Where checkpoints go: a folder (a persistent volume on Kubernetes).</summary>
public sealed class CheckpointStoreOptions
{
    /// <summary>Root folder; checkpoints live at &lt;root&gt;/&lt;sweep&gt;/&lt;trial&gt;/{latest,best}.ckpt.</summary>
    public string Root { get; set; } = "checkpoints";
    /// <summary>Keep best.ckpt of this many best trials per sweep; others are deleted when a trial ends.</summary>
    public int KeepBestPerSweep { get; set; } = 3;
}

/// <summary>Which checkpoint of a trial.</summary>
public enum CheckpointSlot
{
    /// <summary>The most recent state: what a re-queued trial resumes from.</summary>
    Latest,
    /// <summary>The epoch with the trial's best objective: what `orch best` downloads.</summary>
    Best,
}

/// <summary>
/// Stores uploaded checkpoints on disk. An upload is streamed to a temporary file, its SHA-256
/// checked, then renamed into place (<see cref="ChunkedFileReceiver"/>), so a broken or corrupt
/// upload never replaces a good file.
/// </summary>
public sealed class CheckpointStore(IOptions<CheckpointStoreOptions> options)
{
    /// <summary>How long a reader waits for the checkpoint of a trial stopped between two epochs (<see cref="Expect"/>).</summary>
    public static readonly TimeSpan ExpectedUploadPatience = TimeSpan.FromSeconds(60);

    private readonly string _root = Path.GetFullPath(options.Value.Root);
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, TaskCompletionSource> _expected = new(StringComparer.Ordinal);

    /// <summary>
    /// The workers of a trial stopped between two epochs are uploading the checkpoint of the epoch
    /// it was judged on: a reader of that trial's checkpoint waits for it (<see cref="WaitForExpectedAsync"/>)
    /// until it is stored or the worker is done (<see cref="Settled"/>). In memory: after a restart
    /// a reader finds whatever arrived.
    /// </summary>
    public void Expect(string trialId) => _expected.TryAdd(trialId, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));

    /// <summary>The expected checkpoint of <paramref name="trialId"/> was stored, or its worker stopped without one.</summary>
    public void Settled(string trialId)
    {
        if (_expected.TryRemove(trialId, out var arrival)) arrival.TrySetResult();
    }

    /// <summary>Waits, at most <paramref name="patience"/>, for an expected checkpoint of <paramref name="trialId"/>; returns at once when none is.</summary>
    public async Task WaitForExpectedAsync(string trialId, TimeSpan patience, CancellationToken ct)
    {
        if (!_expected.TryGetValue(trialId, out var arrival)) return;
        try
        {
            await arrival.Task.WaitAsync(patience, ct).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            // A worker that died on the way: stop waiting for it.
            _expected.TryRemove(new KeyValuePair<string, TaskCompletionSource>(trialId, arrival));
        }
    }

    public int KeepBestPerSweep => options.Value.KeepBestPerSweep;

    /// <summary>The folder every checkpoint lives under.</summary>
    public string Root => _root;

    /// <summary>Whether a write failed because the volume is full (ENOSPC on Linux, disk full or quota on Windows).</summary>
    public static bool IsDiskFull(IOException e) =>
        (e ?? throw new ArgumentNullException(nameof(e))).HResult is 28 or unchecked((int)0x80070070) or unchecked((int)0x80070027);

    public string PathOf(string sweepId, string trialId, CheckpointSlot slot) =>
        Path.Combine(_root, Safe(sweepId), Safe(trialId), slot == CheckpointSlot.Latest ? "latest.ckpt" : "best.ckpt");

    public bool Exists(string sweepId, string trialId, CheckpointSlot slot) => File.Exists(PathOf(sweepId, trialId, slot));

    /// <summary>
    /// Begins an upload of <paramref name="size"/> bytes; write them, then
    /// <see cref="ChunkedFileReceiver.CommitAsync"/> with the sender's hash.
    /// </summary>
    public ChunkedFileReceiver BeginUpload(string sweepId, string trialId, CheckpointSlot slot, long size) =>
        new(PathOf(sweepId, trialId, slot), size, $"the {(slot == CheckpointSlot.Best ? "best" : "latest")} checkpoint of {trialId}");

    public FileStream OpenRead(string sweepId, string trialId, CheckpointSlot slot) =>
        new(PathOf(sweepId, trialId, slot), FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, 1 << 16, useAsync: true);

    public void Delete(string sweepId, string trialId, CheckpointSlot slot)
    {
        var path = PathOf(sweepId, trialId, slot);
        if (File.Exists(path)) File.Delete(path);
    }

    /// <summary>Deletes every checkpoint of a trial.</summary>
    public void DeleteTrial(string sweepId, string trialId)
    {
        var dir = Path.Combine(_root, Safe(sweepId), Safe(trialId));
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
    }

    private static string Safe(string id)
    {
        // Ids are generated by the coordinator, but a path must never escape the root.
        if (id.Length == 0 || id.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_')))
            throw new ArgumentException($"invalid id '{id}'");
        return id;
    }
}

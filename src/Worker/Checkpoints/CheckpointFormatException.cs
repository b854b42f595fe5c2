namespace Orchestrator.Worker.Checkpoints;

/// <summary>
/// A checkpoint that cannot be used: not a checkpoint, damaged (checksum), or intact but wrong inside
/// (a header that is not JSON or lacks fields, a missing section, weights of another model or shape).
/// The message names the checkpoint as the user knows it and says what is wrong, in one line.
/// </summary>
public sealed class CheckpointFormatException : Exception
{
    public CheckpointFormatException(string checkpoint, string problem, long? offset = null, Exception? inner = null)
        : base(offset is { } o ? $"{checkpoint}: {problem} (at byte offset {o})" : $"{checkpoint}: {problem}", inner)
    {
        Checkpoint = checkpoint;
        Problem = problem;
        Offset = offset;
    }

    public CheckpointFormatException() { Checkpoint = ""; Problem = ""; }
    public CheckpointFormatException(string message) : base(message) { Checkpoint = ""; Problem = message; }
    public CheckpointFormatException(string message, Exception inner) : base(message, inner) { Checkpoint = ""; Problem = message; }

    /// <summary>The checkpoint's path, or what it is to the user when the file is a temporary copy ("the checkpoint of sw-1-t0003").</summary>
    public string Checkpoint { get; }

    /// <summary>What is wrong, without the name.</summary>
    public string Problem { get; }

    /// <summary>Where in the file, when the problem is at one place.</summary>
    public long? Offset { get; }
}

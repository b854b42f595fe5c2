using Orchestrator.Data;

namespace Orchestrator.Worker.Data;

/// <summary>
/// One batch in host memory, as the loader hands it to the training thread: uint8 CHW images back
/// to back, int64 labels, and the seed for the batch's device-side augmentation. Buffers are pooled:
/// give the batch back with <see cref="BatchLoader.Return"/> once its tensors are made.
/// </summary>
public sealed class HostBatch
{
    internal HostBatch(ImageShape shape, int capacity)
    {
        Shape = shape;
        Images = new byte[(long)shape.Size * capacity];
        Labels = new long[capacity];
    }

    public ImageShape Shape { get; }
    public byte[] Images { get; }
    public long[] Labels { get; }
    public int Count { get; internal set; }
    public int Epoch { get; internal set; }
    public int Index { get; internal set; }
    public ulong AugmentSeed { get; internal set; }
}

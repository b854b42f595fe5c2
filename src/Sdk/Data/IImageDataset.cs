namespace Orchestrator.Data;

/// <summary>The fixed shape of every image in a data set, channels first.</summary>
public readonly record struct ImageShape(int Channels, int Height, int Width)
{
    /// <summary>Bytes of one image (uint8, CHW).</summary>
    public int Size => Channels * Height * Width;

    /// <inheritdoc />
    public override string ToString() => $"{Channels}x{Height}x{Width}";
}

/// <summary>
/// A labelled image data set with random access. Images are uint8, channels first (CHW), all of
/// one <see cref="Shape"/>. Implementations are safe for concurrent reads.
/// </summary>
public interface IImageDataset
{
    /// <summary>Name for messages, e.g. "fashion-mnist/train".</summary>
    string Name { get; }

    /// <summary>Number of images.</summary>
    int Count { get; }

    /// <summary>The shape every image has.</summary>
    ImageShape Shape { get; }

    /// <summary>Class names, indexed by label.</summary>
    IReadOnlyList<string> Classes { get; }

    /// <summary>The class index of image <paramref name="index"/>.</summary>
    int GetLabel(int index);

    /// <summary>Copies image <paramref name="index"/> as CHW uint8 into <paramref name="destination"/> (length ≥ Shape.Size).</summary>
    void CopyImage(int index, Span<byte> destination);
}


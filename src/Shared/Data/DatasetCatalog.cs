namespace Orchestrator.Data;

/// <summary>What is known about a data set before reading it: shape, classes, normalisation statistics, where it comes from.</summary>
public sealed record DatasetInfo(
    string Name,
    ImageShape Shape,
    IReadOnlyList<string> Classes,
    float[] Mean,
    float[] Std,
    IReadOnlyList<DatasetFile> Files)
{
    public int NumClasses => Classes.Count;
}

/// <summary>
/// One file a data set needs: the name it has on disk, the official URL it is downloaded from
/// (null when there is none), and its MD5 checksum. An archive is unpacked after download and
/// <see cref="Name"/> is then a folder.
/// </summary>
public sealed record DatasetFile(string Name, string? Url, string? Md5, bool IsArchive = false);

/// <summary>The built-in data sets.</summary>
public static class DatasetCatalog
{
    private static readonly string[] FashionClasses =
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

    private static readonly string[] DigitClasses = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

    private static readonly string[] Cifar10Classes =
        ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

    /// <summary>The ImageNet statistics, the usual choice for photos and for transfer learning.</summary>
    public static readonly float[] ImageNetMean = [0.485f, 0.456f, 0.406f];
    public static readonly float[] ImageNetStd = [0.229f, 0.224f, 0.225f];

    public static DatasetInfo FashionMnist { get; } = new(
        "fashion-mnist", new ImageShape(1, 28, 28), FashionClasses, [0.2860f], [0.3530f],
        [
            new("train-images-idx3-ubyte.gz", "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            new("train-labels-idx1-ubyte.gz", "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
            new("t10k-images-idx3-ubyte.gz", "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
            new("t10k-labels-idx1-ubyte.gz", "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
        ]);

    public static DatasetInfo Mnist { get; } = new(
        "mnist", new ImageShape(1, 28, 28), DigitClasses, [0.1307f], [0.3081f],
        [
            new("train-images-idx3-ubyte.gz", "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            new("train-labels-idx1-ubyte.gz", "https://ossci-datasets.s3.amazonaws.com/mnist/train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
            new("t10k-images-idx3-ubyte.gz", "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
            new("t10k-labels-idx1-ubyte.gz", "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
        ]);

    public static DatasetInfo Cifar10 { get; } = new(
        "cifar10", new ImageShape(3, 32, 32), Cifar10Classes, [0.4914f, 0.4822f, 0.4465f], [0.2470f, 0.2435f, 0.2616f],
        [new("cifar-10-batches-bin", "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530", IsArchive: true)]);

    public static DatasetInfo Cifar100 { get; } = new(
        "cifar100", new ImageShape(3, 32, 32), Enumerable.Range(0, 100).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray(),
        [0.5071f, 0.4865f, 0.4409f], [0.2673f, 0.2564f, 0.2762f],
        [new("cifar-100-binary", "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz", "03b5dce01913d631647c71ecec9e9cb8", IsArchive: true)]);

    /// <summary>Looks up a built-in data set with files (not imagefolder or synthetic, whose shape depends on options).</summary>
    public static DatasetInfo? Find(string name) => name switch
    {
        "fashion-mnist" => FashionMnist,
        "mnist" => Mnist,
        "cifar10" => Cifar10,
        "cifar100" => Cifar100,
        _ => null,
    };
}

using Orchestrator.Data.Readers;

namespace Orchestrator.Data.Tests;

public sealed class CifarReaderTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private static byte Pixel(int record, int p) => (byte)(record * 13 + p);

    /// <summary>Writes a CIFAR-10 folder: batch b holds (b + 1) records, labels (b + r) % 10, test holds 2.</summary>
    private string WriteCifar10(string? meta = null)
    {
        var dir = _dir.Dir(CifarReader.Cifar10Folder);
        for (var b = 0; b < 5; b++)
        {
            var labels = Enumerable.Range(0, b + 1).Select(r => new[] { (byte)((b + r) % 10) }).ToArray();
            File.WriteAllBytes(Path.Combine(dir, $"data_batch_{b + 1}.bin"), TestFiles.CifarRecords(labels, (r, p) => Pixel(b * 10 + r, p)));
        }
        File.WriteAllBytes(Path.Combine(dir, "test_batch.bin"), TestFiles.CifarRecords([[4], [9]], (r, p) => Pixel(100 + r, p)));
        if (meta is not null) File.WriteAllText(Path.Combine(dir, "batches.meta.txt"), meta);
        return dir;
    }

    [Fact]
    public void Cifar10_train_reads_all_five_batches_in_order_with_chw_pixels_and_labels()
    {
        var dir = WriteCifar10();

        var train = CifarReader.ReadCifar10(dir, train: true);

        Assert.Equal(new ImageShape(3, 32, 32), train.Shape);
        Assert.Equal(1 + 2 + 3 + 4 + 5, train.Count);
        var image = new byte[3072];
        var i = 0;
        for (var b = 0; b < 5; b++)
        {
            for (var r = 0; r <= b; r++, i++)
            {
                Assert.Equal((b + r) % 10, train.GetLabel(i));
                train.CopyImage(i, image);
                // The file's R, G, B planes are the CHW layout: byte p of the record is byte p of the image.
                Assert.Equal(Enumerable.Range(0, 3072).Select(p => Pixel(b * 10 + r, p)), image);
            }
        }
        Assert.Equal(DatasetCatalog.Cifar10.Classes, train.Classes);
    }

    [Fact]
    public void Cifar10_test_reads_test_batch_and_class_names_from_the_meta_file()
    {
        var dir = WriteCifar10(meta: "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n\n");

        // The parent folder works too: the reader looks for cifar-10-batches-bin inside it.
        var test = CifarReader.ReadCifar10(_dir.Path, train: false);

        Assert.Equal(2, test.Count);
        Assert.Equal([4, 9], test.Labels.ToArray());
        Assert.Equal(["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"], test.Classes);
        var image = new byte[3072];
        test.CopyImage(1, image);
        Assert.Equal(Pixel(101, 0), image[0]);
        Assert.Equal(Pixel(101, 3071), image[3071]);
    }

    [Fact]
    public void Cifar100_uses_the_fine_label_and_the_fine_label_names()
    {
        var dir = _dir.Dir(CifarReader.Cifar100Folder);
        File.WriteAllBytes(Path.Combine(dir, "train.bin"), TestFiles.CifarRecords([[19, 99], [0, 42], [7, 0]], Pixel));
        File.WriteAllBytes(Path.Combine(dir, "test.bin"), TestFiles.CifarRecords([[1, 5]], Pixel));
        File.WriteAllLines(Path.Combine(dir, "fine_label_names.txt"), Enumerable.Range(0, 100).Select(i => "fine" + i));

        var train = CifarReader.ReadCifar100(dir, train: true);
        var test = CifarReader.ReadCifar100(dir, train: false);

        Assert.Equal([99, 42, 0], train.Labels.ToArray());
        Assert.Equal([5], test.Labels.ToArray());
        Assert.Equal(100, train.Classes.Count);
        Assert.Equal("fine42", train.Classes[42]);
        var image = new byte[3072];
        train.CopyImage(2, image);
        Assert.Equal(Enumerable.Range(0, 3072).Select(p => Pixel(2, p)), image);
    }

    [Fact]
    public void A_batch_with_a_partial_record_names_the_file_and_where_the_partial_record_starts()
    {
        var dir = WriteCifar10();
        var path = Path.Combine(dir, "data_batch_3.bin");
        File.WriteAllBytes(path, [.. File.ReadAllBytes(path), 1, 2, 3]);

        var ex = Assert.Throws<DataFormatException>(() => CifarReader.ReadCifar10(dir, train: true));

        Assert.Equal(path, ex.File);
        Assert.Equal(3 * 3073, ex.Offset);
        Assert.Contains("not a multiple of the 3073-byte record", ex.Message);
    }

    [Fact]
    public void A_label_out_of_range_names_the_file_and_the_label_offset()
    {
        var dir = WriteCifar10();
        var path = Path.Combine(dir, "test_batch.bin");
        File.WriteAllBytes(path, TestFiles.CifarRecords([[1], [10]], Pixel));

        var ex = Assert.Throws<DataFormatException>(() => CifarReader.ReadCifar10(dir, train: false));

        Assert.Equal(path, ex.File);
        Assert.Equal(3073, ex.Offset);
        Assert.Contains("label 10 is out of range for 10 classes", ex.Message);
    }

    [Fact]
    public void A_cifar100_fine_label_out_of_range_points_at_the_fine_label_byte()
    {
        var dir = _dir.Dir(CifarReader.Cifar100Folder);
        var path = Path.Combine(dir, "test.bin");
        File.WriteAllBytes(path, TestFiles.CifarRecords([[1, 5], [2, 100]], Pixel));

        var ex = Assert.Throws<DataFormatException>(() => CifarReader.ReadCifar100(dir, train: false));

        Assert.Equal(3074 + 1, ex.Offset);
        Assert.Contains("label 100 is out of range for 100 classes", ex.Message);
    }

    [Fact]
    public void A_missing_batch_file_is_named()
    {
        var dir = WriteCifar10();
        var path = Path.Combine(dir, "data_batch_4.bin");
        File.Delete(path);

        var ex = Assert.Throws<DataFormatException>(() => CifarReader.ReadCifar10(dir, train: true));

        Assert.Equal(path, ex.File);
        Assert.Contains("missing batch file", ex.Message);
    }

    [Fact]
    public void A_meta_file_with_the_wrong_number_of_names_is_rejected()
    {
        var dir = WriteCifar10(meta: "cat\ndog\n");

        var ex = Assert.Throws<DataFormatException>(() => CifarReader.ReadCifar10(dir, train: false));

        Assert.Contains("batches.meta.txt", ex.File);
        Assert.Contains("lists 2 class names, expected 10", ex.Message);
    }
}

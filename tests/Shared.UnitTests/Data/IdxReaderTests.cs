using Orchestrator.Data.Readers;

namespace Orchestrator.Data.Tests;

public sealed class IdxReaderTests : IDisposable
{
    private static readonly string[] TenClasses = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private string Write(string name, byte[] data)
    {
        var path = _dir.Combine(name);
        File.WriteAllBytes(path, data);
        return path;
    }

    private static byte Pixel(int image, int p) => (byte)(image * 31 + p * 7);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Reads_pixels_labels_and_shape_back_from_raw_and_gzip_files(bool gzip)
    {
        byte[] labels = [3, 0, 9, 1, 7];
        var images = TestFiles.IdxImages(5, 4, 6, Pixel);
        var labelFile = TestFiles.IdxLabels(labels);
        // Names without ".gz": compression must be detected from the content.
        var imagesPath = Write("images-idx3-ubyte", gzip ? TestFiles.Gzip(images) : images);
        var labelsPath = Write("labels-idx1-ubyte", gzip ? TestFiles.Gzip(labelFile) : labelFile);

        var data = IdxReader.Read(imagesPath, labelsPath, TenClasses, name: "tiny");

        Assert.Equal(new ImageShape(1, 4, 6), data.Shape);
        Assert.Equal(5, data.Count);
        Assert.Equal("tiny", data.Name);
        Assert.Equal(labels.Select(l => (int)l), data.Labels.ToArray());
        var image = new byte[24];
        for (var i = 0; i < 5; i++)
        {
            data.CopyImage(i, image);
            Assert.Equal(Enumerable.Range(0, 24).Select(p => Pixel(i, p)), image);
        }
    }

    [Fact]
    public void A_gzip_file_named_without_gz_and_a_raw_file_named_gz_both_read()
    {
        var raw = Write("raw.gz", TestFiles.IdxLabels([1, 2]));
        var packed = Write("packed", TestFiles.Gzip(TestFiles.IdxLabels([1, 2])));

        Assert.Equal([1, 2], IdxReader.ReadLabels(raw, 10));
        Assert.Equal([1, 2], IdxReader.ReadLabels(packed, 10));
    }

    [Fact]
    public void A_label_file_given_as_images_is_rejected_for_its_wrong_magic()
    {
        var path = Write("swapped", TestFiles.IdxLabels([1, 2, 3]));

        var ex = Assert.Throws<DataFormatException>(() => IdxReader.ReadImages(path));

        Assert.Equal(path, ex.File);
        Assert.Equal(0, ex.Offset);
        Assert.Contains("wrong magic number 0x00000801", ex.Message);
        Assert.Contains("expected 0x00000803", ex.Message);
        Assert.Contains(path, ex.Message);
    }

    [Fact]
    public void A_file_that_is_not_idx_is_rejected_for_its_wrong_magic()
    {
        var path = Write("text.gz", TestFiles.Gzip("hello, this is not IDX"u8.ToArray()));

        var ex = Assert.Throws<DataFormatException>(() => IdxReader.ReadLabels(path, 10));

        Assert.Contains("wrong magic number", ex.Message);
        Assert.Contains(path, ex.Message);
    }

    [Fact]
    public void Images_of_another_size_than_expected_are_rejected_naming_both_sizes()
    {
        var path = Write("images", TestFiles.IdxImages(2, 32, 32, Pixel));

        var ex = Assert.Throws<DataFormatException>(() => IdxReader.ReadImages(path, new ImageShape(1, 28, 28)));

        Assert.Equal(path, ex.File);
        Assert.Contains("32x32", ex.Message);
        Assert.Contains("expected 28x28", ex.Message);
    }

    [Fact]
    public void Zero_rows_in_the_header_are_rejected_as_impossible_dimensions()
    {
        var path = Write("images", TestFiles.IdxImages(2, 0, 28, Pixel));

        var ex = Assert.Throws<DataFormatException>(() => IdxReader.ReadImages(path));

        Assert.Contains("impossible dimensions", ex.Message);
        Assert.Contains(path, ex.Message);
    }

    [Fact]
    public void Dimensions_whose_product_overflows_a_long_are_more_than_an_array_holds_not_an_arithmetic_overflow()
    {
        // Found by fuzzing: 63491 images of 202116108 × 202113026 overflowed (long)count · rows · cols.
        var header = new byte[16];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(header, 0x803);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), 63491);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(8), 202116108);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(12), 202113026);
        var path = Write("huge", header);

        var ex = Assert.Throws<DataFormatException>(() => IdxReader.ReadImages(path));

        Assert.Contains("more than one array can hold", ex.Message);
        Assert.Contains(path, ex.Message);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_truncated_image_file_names_the_file_and_where_the_data_ends(bool gzip)
    {
        var full = TestFiles.IdxImages(3, 4, 4, Pixel);
        var cut = full[..(16 + 2 * 16 + 5)];
        var path = Write("cut", gzip ? TestFiles.Gzip(cut) : cut);

        var ex = Assert.Throws<DataFormatException>(() => IdxReader.ReadImages(path));

        Assert.Equal(path, ex.File);
        Assert.Equal(16 + 2 * 16 + 5, ex.Offset);
        Assert.Contains("truncated", ex.Message);
        Assert.Contains("3 images of 4x4", ex.Message);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_label_header_claiming_two_billion_labels_in_a_small_file_is_truncated_not_out_of_memory(bool gzip)
    {
        var labels = TestFiles.IdxLabels([1, 2, 3]);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(labels.AsSpan(4), int.MaxValue - 100);
        var path = Write("huge", gzip ? TestFiles.Gzip(labels) : labels);
        var before = GC.GetAllocatedBytesForCurrentThread();

        var ex = Assert.Throws<DataFormatException>(() => IdxReader.ReadLabels(path, 10));

        Assert.Equal(path, ex.File);
        Assert.Contains($"the header promises {int.MaxValue - 100} labels", ex.Message);
        Assert.Contains("only 3 bytes follow it", ex.Message);
        // Memory follows the data: at most one read chunk, never the 2 GB the header claims.
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 100_000_000, "allocated on the header's word");
    }

    [Fact]
    public void A_file_shorter_than_its_header_is_reported_as_truncated()
    {
        var path = Write("short", TestFiles.IdxImages(1, 2, 2, Pixel)[..10]);

        var ex = Assert.Throws<DataFormatException>(() => IdxReader.ReadImages(path));

        Assert.Contains("truncated", ex.Message);
        Assert.Equal(10, ex.Offset);
    }

    [Fact]
    public void Bytes_after_the_promised_data_are_reported()
    {
        var path = Write("long", [.. TestFiles.IdxLabels([1, 2]), 42]);

        var ex = Assert.Throws<DataFormatException>(() => IdxReader.ReadLabels(path, 10));

        Assert.Contains("unexpected data after the 2 labels", ex.Message);
        Assert.Equal(10, ex.Offset);
    }

    [Fact]
    public void A_corrupt_gzip_stream_is_a_data_format_error_naming_the_file()
    {
        var packed = TestFiles.Gzip(TestFiles.IdxImages(20, 8, 8, Pixel));
        // Flip a bit of the CRC-32 in the gzip trailer: the content decodes, the check must fail.
        packed[^8] ^= 0x01;
        var path = Write("garbled.gz", packed);

        var ex = Assert.Throws<DataFormatException>(() => IdxReader.ReadImages(path));

        Assert.Equal(path, ex.File);
        Assert.True(ex.Message.Contains("gzip", StringComparison.Ordinal), ex.Message);
    }

    [Fact]
    public void Different_image_and_label_counts_are_rejected_naming_both_files()
    {
        var images = Write("images", TestFiles.IdxImages(3, 2, 2, Pixel));
        var labels = Write("labels", TestFiles.IdxLabels([1, 2]));

        var ex = Assert.Throws<DataFormatException>(() => IdxReader.Read(images, labels, TenClasses));

        Assert.Equal(labels, ex.File);
        Assert.Contains("holds 2 labels", ex.Message);
        Assert.Contains(images, ex.Message);
        Assert.Contains("3 images", ex.Message);
    }

    [Fact]
    public void A_label_beyond_the_class_count_names_the_file_the_label_and_its_offset()
    {
        var path = Write("labels", TestFiles.IdxLabels([1, 2, 10, 3]));

        var ex = Assert.Throws<DataFormatException>(() => IdxReader.ReadLabels(path, 10));

        Assert.Equal(path, ex.File);
        Assert.Equal(8 + 2, ex.Offset);
        Assert.Contains("label 10 is out of range for 10 classes", ex.Message);
    }
}

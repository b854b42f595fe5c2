using System.Security.Cryptography;
using Orchestrator.Checkpoints;

namespace Orchestrator.Shared.UnitTests.Checkpoints;

public sealed class ChunkedFileTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("orch-chunked-");

    public void Dispose() => _dir.Delete(recursive: true);

    private string PathOf(string name) => Path.Combine(_dir.FullName, name);

    private static byte[] Bytes(int length)
    {
        var data = new byte[length];
        new Random(length).NextBytes(data);
        return data;
    }

    private static async Task<List<(byte[] Data, long Offset, string? Sha)>> Chunks(byte[] data, int chunkSize)
    {
        var chunks = new List<(byte[], long, string?)>();
        await foreach (var c in ChunkedFile.ReadAsync(new MemoryStream(data), chunkSize))
            chunks.Add((c.Data.ToArray(), c.Offset, c.Sha256));
        return chunks;
    }

    [Theory]
    [InlineData(0, 4, 1)]
    [InlineData(3, 4, 1)]
    [InlineData(4, 4, 1)]
    [InlineData(9, 4, 3)]
    [InlineData(12, 4, 3)]
    public async Task Splits_a_stream_into_chunks_whose_last_one_carries_the_SHA256_of_the_whole(int length, int chunkSize, int expectedChunks)
    {
        var data = Bytes(length);
        var chunks = await Chunks(data, chunkSize);
        Assert.Equal(expectedChunks, chunks.Count);
        Assert.Equal(data, chunks.SelectMany(c => c.Data).ToArray());
        Assert.Equal(chunks.Select((c, i) => (long)i * chunkSize), chunks.Select(c => c.Offset));
        Assert.All(chunks.SkipLast(1), c => Assert.Null(c.Sha));
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(data)), chunks[^1].Sha);
    }

    [Fact]
    public async Task A_file_sent_in_chunks_arrives_whole_and_verified()
    {
        var data = Bytes(1000);
        var source = PathOf("source.bin");
        await File.WriteAllBytesAsync(source, data);
        var target = PathOf("sub/target.bin");
        await using (var receiver = new ChunkedFileReceiver(target, data.Length, "test file"))
        {
            string? sha = null;
            await foreach (var c in ChunkedFile.ReadFileAsync(source, 64))
            {
                await receiver.WriteAsync(c.Data, CancellationToken.None);
                sha = c.Sha256;
            }
            await receiver.CommitAsync(sha, CancellationToken.None);
        }
        Assert.Equal(data, await File.ReadAllBytesAsync(target));
        Assert.Equal([target], Directory.GetFiles(Path.GetDirectoryName(target)!));
    }

    [Fact]
    public async Task A_corrupt_chunk_is_refused_and_leaves_the_earlier_file_in_place()
    {
        var target = PathOf("latest.ckpt");
        await File.WriteAllTextAsync(target, "the good earlier checkpoint");
        var data = Bytes(300);
        var chunks = await Chunks(data, 100);
        var e = await Assert.ThrowsAsync<ChunkedTransferException>(async () =>
        {
            await using var receiver = new ChunkedFileReceiver(target, data.Length, "the checkpoint of t1");
            foreach (var (bytes, _, _) in chunks)
            {
                if (bytes == chunks[1].Data) bytes[7] ^= 0x40; // one bit flipped in transit
                await receiver.WriteAsync(bytes, CancellationToken.None);
            }
            await receiver.CommitAsync(chunks[^1].Sha, CancellationToken.None);
        });
        Assert.Equal(TransferFailure.HashMismatch, e.Failure);
        Assert.StartsWith("the checkpoint of t1 was damaged in transit: its 300 bytes have SHA-256 ", e.Message);
        Assert.Contains(chunks[^1].Sha!, e.Message);
        Assert.Equal("the good earlier checkpoint", await File.ReadAllTextAsync(target));
        Assert.Equal([target], Directory.GetFiles(_dir.FullName));
    }

    [Fact]
    public async Task A_wrong_hash_is_refused_with_both_hashes_named()
    {
        var target = PathOf("best.ckpt");
        var e = await Assert.ThrowsAsync<ChunkedTransferException>(async () =>
        {
            await using var receiver = new ChunkedFileReceiver(target, 3, "best.ckpt");
            await receiver.WriteAsync(new byte[] { 1, 2, 3 }, CancellationToken.None);
            await receiver.CommitAsync(new string('0', 64), CancellationToken.None);
        });
        Assert.Equal(TransferFailure.HashMismatch, e.Failure);
        Assert.Contains(Convert.ToHexStringLower(SHA256.HashData([1, 2, 3])), e.Message);
        Assert.Contains(new string('0', 64), e.Message);
        Assert.Empty(Directory.GetFiles(_dir.FullName));
    }

    [Fact]
    public async Task A_truncated_transfer_is_refused_and_writes_nothing()
    {
        var target = PathOf("latest.ckpt");
        var data = Bytes(300);
        var chunks = await Chunks(data, 100);
        var e = await Assert.ThrowsAsync<ChunkedTransferException>(async () =>
        {
            await using var receiver = new ChunkedFileReceiver(target, data.Length, "the checkpoint of t2");
            await receiver.WriteAsync(chunks[0].Data, CancellationToken.None);
            await receiver.CommitAsync(chunks[^1].Sha, CancellationToken.None);
        });
        Assert.Equal(TransferFailure.Truncated, e.Failure);
        Assert.Equal("the checkpoint of t2: received 100 of the announced 300 bytes", e.Message);
        Assert.Empty(Directory.GetFiles(_dir.FullName));
    }

    [Fact]
    public async Task A_transfer_that_ends_without_its_hash_is_refused()
    {
        var target = PathOf("latest.ckpt");
        var e = await Assert.ThrowsAsync<ChunkedTransferException>(async () =>
        {
            await using var receiver = new ChunkedFileReceiver(target, null, "the checkpoint of t3");
            await receiver.WriteAsync(new byte[10], CancellationToken.None);
            await receiver.CommitAsync(null, CancellationToken.None);
        });
        Assert.Equal(TransferFailure.MissingHash, e.Failure);
        Assert.Equal("the checkpoint of t3: the transfer ended after 10 bytes without its SHA-256 (cut short?)", e.Message);
        Assert.Empty(Directory.GetFiles(_dir.FullName));
    }

    [Fact]
    public async Task More_bytes_than_announced_are_refused_at_once()
    {
        var target = PathOf("latest.ckpt");
        await using var receiver = new ChunkedFileReceiver(target, 5, "upload");
        await receiver.WriteAsync(new byte[4], CancellationToken.None);
        var e = await Assert.ThrowsAsync<ChunkedTransferException>(() => receiver.WriteAsync(new byte[4], CancellationToken.None).AsTask());
        Assert.Equal(TransferFailure.TooLong, e.Failure);
        Assert.Equal("upload: more than the announced 5 bytes arrived (8 so far)", e.Message);
        await receiver.DisposeAsync();
        Assert.Empty(Directory.GetFiles(_dir.FullName));
    }

    [Fact]
    public async Task An_abandoned_transfer_leaves_no_temporary_file()
    {
        var target = PathOf("latest.ckpt");
        await using (var receiver = new ChunkedFileReceiver(target))
        {
            await receiver.WriteAsync(new byte[100], CancellationToken.None);
            Assert.Single(Directory.GetFiles(_dir.FullName)); // the temporary file, not the target
            Assert.False(File.Exists(target));
        }
        Assert.Empty(Directory.GetFiles(_dir.FullName));
    }
}

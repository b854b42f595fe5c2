using Grpc.Core;
using Orchestrator.Checkpoints;
using Orchestrator.Protocol.V1;

namespace Orchestrator.Shared.UnitTests.Checkpoints;

public sealed class CheckpointChunksTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("orch-chunks-");

    public void Dispose() => _dir.Delete(recursive: true);

    private sealed class Recorder : IAsyncStreamWriter<CheckpointChunk>
    {
        public List<CheckpointChunk> Messages { get; } = [];
        public WriteOptions? WriteOptions { get; set; }
        public Task WriteAsync(CheckpointChunk message)
        {
            Messages.Add(message);
            return Task.CompletedTask;
        }
    }

    private sealed class Replay(IEnumerable<CheckpointChunk> messages) : IAsyncStreamReader<CheckpointChunk>
    {
        private readonly IEnumerator<CheckpointChunk> _messages = messages.GetEnumerator();
        public CheckpointChunk Current => _messages.Current;
        public Task<bool> MoveNext(CancellationToken cancellationToken) => Task.FromResult(_messages.MoveNext());
    }

    private static async Task<List<CheckpointChunk>> Send(byte[] data)
    {
        var recorder = new Recorder();
        await CheckpointChunks.SendAsync(new MemoryStream(data), "t1.ckpt", recorder, CancellationToken.None);
        return recorder.Messages;
    }

    [Fact]
    public async Task A_checkpoint_streamed_by_the_coordinator_is_received_whole()
    {
        var data = new byte[ChunkedFile.DefaultChunkSize * 2 + 17];
        new Random(1).NextBytes(data);
        var messages = await Send(data);
        Assert.Equal(3, messages.Count);
        Assert.Equal(["t1.ckpt", "", ""], messages.Select(m => m.FileName));
        Assert.All(messages, m => Assert.Equal(data.Length, m.TotalSize));
        Assert.Equal([false, false, true], messages.Select(m => m.Sha256.Length > 0));
        var target = Path.Combine(_dir.FullName, "resume.ckpt");
        Assert.Equal(target, await CheckpointChunks.ReceiveAsync(new Replay(messages), target, "the checkpoint of t1", CancellationToken.None));
        Assert.Equal(data, await File.ReadAllBytesAsync(target));
    }

    [Fact]
    public async Task A_stream_cut_before_its_last_chunk_is_refused_and_writes_nothing()
    {
        var data = new byte[ChunkedFile.DefaultChunkSize + 1];
        var messages = await Send(data);
        var target = Path.Combine(_dir.FullName, "resume.ckpt");
        var e = await Assert.ThrowsAsync<ChunkedTransferException>(() =>
            CheckpointChunks.ReceiveAsync(new Replay(messages.Take(1)), target, "the checkpoint of t1", CancellationToken.None));
        // The size announced with every chunk tells a short stream from a complete one.
        Assert.Equal(TransferFailure.MissingHash, e.Failure);
        Assert.Contains("without its SHA-256", e.Message);
        Assert.Empty(Directory.GetFiles(_dir.FullName));
    }

    [Fact]
    public async Task An_empty_checkpoint_travels_as_one_chunk_with_its_hash()
    {
        var messages = await Send([]);
        var only = Assert.Single(messages);
        Assert.Equal(64, only.Sha256.Length);
        var target = Path.Combine(_dir.FullName, "empty.ckpt");
        await CheckpointChunks.ReceiveAsync(new Replay(messages), target, "empty", CancellationToken.None);
        Assert.Empty(await File.ReadAllBytesAsync(target));
    }
}

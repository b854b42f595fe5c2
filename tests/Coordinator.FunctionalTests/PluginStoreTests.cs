using System.Security.Cryptography;
using Google.Protobuf;
using Grpc.Core;
using Orchestrator.Protocol.V1;
using Orchestrator.TestSupport;

namespace Orchestrator.Coordinator.FunctionalTests;

/// <summary>The Plugins service: users upload code, stored by its SHA-256 only when the bytes hash to it; workers download it.</summary>
public sealed class PluginStoreTests
{
    private static Metadata Bearer(string token) => new() { { "authorization", "Bearer " + token } };

    private static Task<TestCoordinator> StartAsync() => TestCoordinator.StartAsync(o =>
    {
        o.AuthToken = "admin";
        o.WorkerToken = "worker-secret";
        o.UserToken = "user-secret";
        o.ViewerToken = "viewer-secret";
    });

    private static async Task<PluginFileStored> UploadAsync(Protocol.V1.Plugins.PluginsClient client, byte[] bytes, string sha256, string token)
    {
        using var call = client.UploadPluginFile(Bearer(token), DateTime.UtcNow.AddSeconds(30));
        // Two chunks: the first carries the hash and the size.
        var half = bytes.Length / 2;
        await call.RequestStream.WriteAsync(new PluginFileChunk { Sha256 = sha256, TotalSize = bytes.Length, Data = ByteString.CopyFrom(bytes, 0, half) }).DefaultTimeout();
        await call.RequestStream.WriteAsync(new PluginFileChunk { Data = ByteString.CopyFrom(bytes, half, bytes.Length - half) }).DefaultTimeout();
        await call.RequestStream.CompleteAsync().DefaultTimeout();
        return await call.ResponseAsync.DefaultTimeout();
    }

    private static async Task<byte[]> DownloadAsync(Protocol.V1.Plugins.PluginsClient client, string sha256, string token)
    {
        using var call = client.DownloadPluginFile(new DownloadPluginFileRequest { Sha256 = sha256 }, Bearer(token), DateTime.UtcNow.AddSeconds(30));
        var bytes = new MemoryStream();
        await foreach (var chunk in call.ResponseStream.ReadAllAsync().ConfigureAwait(false)) chunk.Data.WriteTo(bytes);
        return bytes.ToArray();
    }

    [Fact]
    public async Task A_user_uploads_a_plugin_file_once_by_its_hash_and_a_worker_downloads_the_same_bytes()
    {
        await using var coordinator = await StartAsync();
        var client = new Protocol.V1.Plugins.PluginsClient(coordinator.Channel);
        var bytes = RandomNumberGenerator.GetBytes(700_000);
        var sha = Convert.ToHexStringLower(SHA256.HashData(bytes));

        Assert.False((await UploadAsync(client, bytes, sha, "user-secret")).Existed);
        Assert.True((await UploadAsync(client, bytes, sha, "user-secret")).Existed);
        Assert.Equal(bytes, await DownloadAsync(client, sha, "worker-secret").DefaultTimeout());
        // Beside the checkpoints, named by its hash.
        Assert.Equal(bytes, await File.ReadAllBytesAsync(Path.Combine(coordinator.StateDir, "checkpoints", "plugins", sha)));
    }

    [Fact]
    public async Task Bytes_that_do_not_hash_to_the_announced_sha256_are_refused_and_nothing_is_stored()
    {
        await using var coordinator = await StartAsync();
        var client = new Protocol.V1.Plugins.PluginsClient(coordinator.Channel);
        var bytes = RandomNumberGenerator.GetBytes(1000);
        var other = Convert.ToHexStringLower(SHA256.HashData(new byte[] { 1, 2, 3 }));

        var e = await Assert.ThrowsAsync<RpcException>(() => UploadAsync(client, bytes, other, "user-secret"));
        Assert.Equal(StatusCode.DataLoss, e.StatusCode);
        Assert.Contains("damaged in transit", e.Status.Detail);
        var missing = await Assert.ThrowsAsync<RpcException>(() => DownloadAsync(client, other, "worker-secret"));
        Assert.Equal(StatusCode.NotFound, missing.StatusCode);
        Assert.Empty(Directory.GetFiles(coordinator.StateDir, other + "*", SearchOption.AllDirectories));
    }

    [Fact]
    public async Task Only_a_user_may_upload_code_and_a_viewer_may_not_download_it()
    {
        await using var coordinator = await StartAsync();
        var client = new Protocol.V1.Plugins.PluginsClient(coordinator.Channel);
        var bytes = new byte[] { 42 };
        var sha = Convert.ToHexStringLower(SHA256.HashData(bytes));
        foreach (var token in new[] { "worker-secret", "viewer-secret" })
        {
            var e = await Assert.ThrowsAsync<RpcException>(() => UploadAsync(client, bytes, sha, token));
            Assert.Equal(StatusCode.PermissionDenied, e.StatusCode);
        }
        await UploadAsync(client, bytes, sha, "user-secret");
        var viewer = await Assert.ThrowsAsync<RpcException>(() => DownloadAsync(client, sha, "viewer-secret"));
        Assert.Equal(StatusCode.PermissionDenied, viewer.StatusCode);
    }
}

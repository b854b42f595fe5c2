namespace Orchestrator.Cli.FunctionalTests;

public sealed class ErrorTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("orch-err-").FullName;

    [Fact]
    public void An_unknown_model_is_one_line_and_exit_code_2()
    {
        var line = OrchProcess.AssertOneLineError(OrchProcess.Run(_dir, "train", "--model", "vgg16"), 2);
        Assert.Contains("unknown model 'vgg16'", line);
    }

    [Fact]
    public void An_unknown_data_set_is_one_line()
    {
        var line = OrchProcess.AssertOneLineError(OrchProcess.Run(_dir, "train", "--dataset", "svhn"), 2);
        Assert.Contains("unknown data set 'svhn'", line);
    }

    [Fact]
    public void An_unknown_option_is_one_line()
    {
        var line = OrchProcess.AssertOneLineError(OrchProcess.Run(_dir, "train", "--epoch", "3"), 2);
        Assert.Contains("--epoch", line);
    }

    [Fact]
    public void A_bad_option_value_is_one_line()
    {
        OrchProcess.AssertOneLineError(OrchProcess.Run(_dir, "train", "--epochs", "many"), 2);
        var line = OrchProcess.AssertOneLineError(OrchProcess.Run(_dir, "train", "--lr", "-0.1"), 2);
        Assert.Contains("optimizer.lr", line);
    }

    [Fact]
    public void A_bad_devices_value_is_one_line_before_the_worker_connects()
    {
        // No coordinator listens on port 1: the value is checked before any connection attempt.
        var line = OrchProcess.AssertOneLineError(OrchProcess.Run(_dir, "worker", "--coordinator", "http://127.0.0.1:1", "--devices", "cuda:8:H200:lots"), 2);
        Assert.Contains("--devices cuda:8:H200:lots: expected auto, cpu, cuda:N or cuda:N:NAME[:MEMORY]", line);
    }

    [Fact]
    public void Orch_local_with_a_device_it_cannot_use_says_so_in_one_line_and_stores_no_sweep()
    {
        File.WriteAllText(Path.Combine(_dir, "sweep.yaml"), "name: d\ndata: { name: synthetic }\nmodel: { name: simple-cnn }\n");
        var typo = OrchProcess.AssertOneLineError(OrchProcess.Run(_dir, "local", "sweep.yaml", "--device", "gpu", "--state-dir", "state"), 2);
        Assert.Contains("--device gpu: expected auto, cpu, cuda or cuda:N", typo);
        // This machine has no CUDA: said before anything starts.
        var missing = OrchProcess.AssertOneLineError(OrchProcess.Run(_dir, "local", "sweep.yaml", "--device", "cuda", "--state-dir", "state"), 1);
        Assert.Contains("CUDA is not available", missing);
        Assert.False(Directory.Exists(Path.Combine(_dir, "state")), "a sweep was stored");
    }

    [Fact]
    public async Task Pointing_the_cli_at_the_coordinators_http_port_says_so_in_one_line()
    {
        var grpc = Orchestrator.TestSupport.RedisServer.FreePort();
        var http = Orchestrator.TestSupport.RedisServer.FreePort();
        await using var coordinator = OrchService.Start(_dir, "coordinator", "--port", grpc.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--http-port", http.ToString(System.Globalization.CultureInfo.InvariantCulture), "--state-dir", "state", "--gradient-port", "0");
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (OrchProcess.Run(_dir, "sweeps", "--coordinator", $"http://127.0.0.1:{grpc}").ExitCode != 0 && DateTime.UtcNow < deadline) await Task.Delay(300);
        var line = OrchProcess.AssertOneLineError(OrchProcess.Run(_dir, "sweeps", "--coordinator", $"http://127.0.0.1:{http}"), 1);
        Assert.Contains($"http://127.0.0.1:{http} does not speak gRPC (it answers HTTP/1.1)", line);
    }

    [Fact]
    public void A_port_in_use_is_one_line_without_a_stack_trace()
    {
        using var taken = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        taken.Start();
        var port = ((System.Net.IPEndPoint)taken.LocalEndpoint).Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var r = OrchProcess.Run(_dir, "coordinator", "--port", port, "--state-dir", "state", "--gradient-port", "0");
        Assert.Contains($"address already in use", OrchProcess.AssertOneLineError(r, 1));
        Assert.DoesNotContain("   at ", r.StdOut + r.StdErr);
        Assert.DoesNotContain("Exception", r.StdOut, StringComparison.Ordinal);
    }

    [Fact]
    public void An_impossible_pruning_setting_is_one_line()
    {
        var line = OrchProcess.AssertOneLineError(OrchProcess.Run(_dir, "train", "--prune", "1.5"), 2);
        Assert.Contains("pruning.sparsity: must be in [0, 1)", line);
        var file = Path.Combine(_dir, "pruned.yaml");
        File.WriteAllText(file, "epochs: 3\npruning:\n  sparsity: 0.8\n  startEpoch: 3\n");
        line = OrchProcess.AssertOneLineError(OrchProcess.Run(_dir, "train", file), 2);
        Assert.Contains("pruned.yaml:4:", line);
        Assert.Contains("pruning.startEpoch: must be ≥ 0 and less than epochs (3)", line);
    }

    [Fact]
    public void A_trial_file_error_names_the_file_line_and_field()
    {
        var file = Path.Combine(_dir, "trial.yaml");
        File.WriteAllText(file, "epochs: 2\nmodel:\n  name: resnet18\n  dropuot: 0.1\n");
        var line = OrchProcess.AssertOneLineError(OrchProcess.Run(_dir, "train", file), 2);
        Assert.Contains("trial.yaml:4:", line);
        Assert.Contains("dropuot", line);
    }

    [Fact]
    public void A_missing_checkpoint_is_one_line()
    {
        var line = OrchProcess.AssertOneLineError(OrchProcess.Run(_dir, "eval", "--checkpoint", "nope.ckpt"), 1);
        Assert.Contains("nope.ckpt", line);
    }

    [Fact]
    public void A_corrupt_checkpoint_is_one_line()
    {
        File.WriteAllBytes(Path.Combine(_dir, "bad.ckpt"), new byte[4096]);
        var line = OrchProcess.AssertOneLineError(OrchProcess.Run(_dir, "eval", "--checkpoint", "bad.ckpt"), 1);
        Assert.Contains("bad.ckpt", line);
    }

    [Theory]
    [InlineData("weights.pt")]
    [InlineData("weights.safetensors")]
    [InlineData("weights.bin.ckpt")]
    public void Unreadable_pretrained_weights_are_one_line_naming_the_file_without_its_bytes(string name)
    {
        var path = Path.Combine(_dir, name);
        var bytes = new byte[2048];
        new Random(5).NextBytes(bytes);
        bytes[0] = 1; // a TorchSharp reader sees one entry and a name of random bytes
        File.WriteAllBytes(path, bytes);
        var line = OrchProcess.AssertErrorAfterProgress(OrchProcess.Run(_dir, "train", "--dataset", "fashion-mnist", "--epochs", "1",
            "--limit-train", "64", "--limit-test", "64", "--pretrained", path), 1);
        Assert.Contains($"orch: error: {path}: ", line);
        Assert.DoesNotContain(line, c => char.IsControl(c) || c == '\uFFFD');
    }

    [Fact]
    public void An_image_folder_with_a_symbolic_link_loop_or_a_decompression_bomb_is_one_line_naming_the_path()
    {
        var trial = Path.Combine(_dir, "folder.yaml");
        File.WriteAllText(trial, "data: { name: imagefolder, dir: images, imageSize: 16 }\nmodel: { name: simple-cnn }\nepochs: 1\nbatchSize: 4\n");
        var images = Directory.CreateDirectory(Path.Combine(_dir, "images")).FullName;
        // Two tiny valid PNGs per class (1×1, grey), written by hand.
        byte[] png = Convert.FromBase64String("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNoAAAAggCBd81ytgAAAABJRU5ErkJggg==");
        foreach (var c in new[] { "a", "b" })
        {
            Directory.CreateDirectory(Path.Combine(images, c));
            for (var i = 0; i < 4; i++) File.WriteAllBytes(Path.Combine(images, c, $"{i}.png"), png);
        }
        var loop = Path.Combine(images, "a", "again");
        File.CreateSymbolicLink(loop, "..");
        var line = OrchProcess.AssertErrorAfterProgress(OrchProcess.Run(_dir, "train", trial), 1);
        // As the trial names it (data.dir is relative).
        Assert.Contains("orch: error: images/a/again: symbolic link loop", line);

        File.Delete(loop);
        // The same PNG declaring 100000 × 100000 pixels (IHDR rewritten, its CRC recomputed).
        var bomb = (byte[])png.Clone();
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(bomb.AsSpan(16), 100_000);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(bomb.AsSpan(20), 100_000);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(bomb.AsSpan(29), System.IO.Hashing.Crc32.HashToUInt32(bomb.AsSpan(12, 17)));
        var bombPath = Path.Combine(images, "b", "bomb.png");
        File.WriteAllBytes(bombPath, bomb);
        line = OrchProcess.AssertErrorAfterProgress(OrchProcess.Run(_dir, "train", trial), 1);
        Assert.Contains("orch: error: images/b/bomb.png: declares 100000x100000 pixels", line);
    }

    [Fact]
    public void Truncated_data_files_are_named()
    {
        var data = Directory.CreateDirectory(Path.Combine(_dir, "fm")).FullName;
        foreach (var f in Directory.GetFiles("/usr/share/datasets/fashion-mnist", "*-ubyte.gz"))
            File.Copy(f, Path.Combine(data, Path.GetFileName(f)));
        var images = Path.Combine(data, "train-images-idx3-ubyte.gz");
        var bytes = File.ReadAllBytes(images);
        File.WriteAllBytes(images, bytes[..(bytes.Length / 2)]);
        var line = OrchProcess.AssertOneLineError(OrchProcess.Run(_dir, "train", "--dataset", "fashion-mnist", "--data-dir", data, "--epochs", "1"), 1);
        Assert.Contains("train-images-idx3-ubyte.gz", line);
    }

    [Fact]
    public void A_missing_data_set_says_where_it_looked()
    {
        var empty = Directory.CreateDirectory(Path.Combine(_dir, "empty")).FullName;
        var line = OrchProcess.AssertOneLineError(OrchProcess.Run(_dir, "train", "--dataset", "cifar10", "--data-dir", empty, "--no-download"), 1);
        Assert.Contains(empty, line);
    }

    [Fact]
    public void Help_explains_train_to_a_newcomer()
    {
        var r = OrchProcess.Run(_dir, "train", "--help");
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("--limit-train", r.StdOut);
        Assert.Contains("Example: orch train", r.StdOut);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}

using Orchestrator.Data;
using Orchestrator.Trials;
using Orchestrator.Worker.Models;
using TorchSharp;
using TorchSharp.PyBridge;
using static Orchestrator.Worker.UnitTests.Models.ModelTestSupport;
using static TorchSharp.torch;

namespace Orchestrator.Worker.UnitTests.Models;

public class PretrainedWeightsTests
{
    private static readonly ImageShape Rgb32 = new(3, 32, 32);

    [Theory]
    [InlineData("weights.pt")]
    [InlineData("weights.safetensors")]
    [InlineData("weights.ckpt")]
    public void Backbone_loads_and_a_head_for_another_class_count_is_skipped_and_reported(string fileName)
    {
        using var scope = torch.NewDisposeScope();
        using var dir = new TempDir();
        var path = dir.File(fileName);
        using var source = Create("resnet18", Rgb32, 7, "cifar", seed: 11);
        Save(source, path);
        var expected = Snapshot(source);

        using var model = Create("resnet18", Rgb32, 10, "cifar", seed: 22);
        var freshHead = model.state_dict()["fc.weight"].detach().clone();
        var report = PretrainedWeights.Load(model, new PretrainedSpec { Path = path });

        Assert.Equal(["fc.bias", "fc.weight"], report.Skipped.Order());
        Assert.Equal(120, report.Loaded.Count);
        Assert.Equal(["fc.bias", "fc.weight"], report.Missing.Order());
        Assert.Empty(report.Adapted);
        var actual = model.state_dict();
        Assert.All(report.Loaded, name => Assert.True(Equal(expected[name], actual[name]), name));
        Assert.True(Equal(freshHead, actual["fc.weight"]));
        Assert.Equal(10, model.NumClasses);
    }

    [Fact]
    public void Weights_for_the_same_class_count_load_completely_and_reproduce_the_outputs()
    {
        using var scope = torch.NewDisposeScope();
        using var dir = new TempDir();
        var path = dir.File("simple.pt");
        using var source = Create("simple-cnn", new ImageShape(1, 16, 16), 10, seed: 3);
        source.save_py(path);
        using var model = Create("simple-cnn", new ImageShape(1, 16, 16), 10, seed: 4);

        var report = PretrainedWeights.Load(model, new PretrainedSpec { Path = path, Format = "pytorch" });

        Assert.Empty(report.Skipped);
        Assert.Empty(report.Missing);
        source.eval();
        model.eval();
        var x = torch.randn(4, 1, 16, 16);
        Assert.True(source.forward(x).allclose(model.forward(x)));
    }

    [Fact]
    public void FreezeBackbone_after_loading_lets_a_training_step_change_only_the_head()
    {
        using var scope = torch.NewDisposeScope();
        using var dir = new TempDir();
        var path = dir.File("r18.safetensors");
        using (var source = Create("resnet18", Rgb32, 7, "cifar", seed: 5)) source.save_safetensors(path);
        using var model = Create("resnet18", Rgb32, 10, "cifar", seed: 6);

        PretrainedWeights.Load(model, new PretrainedSpec { Path = path, FreezeBackbone = true });

        var trainable = model.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name).Order();
        Assert.Equal(["fc.bias", "fc.weight"], trainable);
        var before = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        model.train();
        using var optimizer = optim.SGD(model.parameters(), 0.1);
        var x = torch.randn(4, 3, 32, 32);
        var y = torch.tensor(new long[] { 0, 1, 2, 3 });
        optimizer.zero_grad();
        nn.functional.cross_entropy(model.forward(x), y).backward();
        optimizer.step();
        foreach (var (name, parameter) in model.named_parameters())
        {
            var changed = !Equal(before[name], parameter);
            Assert.True(changed == name.StartsWith("fc.", StringComparison.Ordinal), $"{name} changed: {changed}");
        }
    }

    [Fact]
    public void Three_channel_conv1_is_summed_into_a_one_channel_model()
    {
        using var scope = torch.NewDisposeScope();
        using var dir = new TempDir();
        var path = dir.File("rgb.pt");
        using var source = Create("resnet18", Rgb32, 10, "cifar", seed: 7);
        source.save_py(path);
        using var model = Create("resnet18", new ImageShape(1, 32, 32), 10, "cifar", seed: 8);

        var report = PretrainedWeights.Load(model, new PretrainedSpec { Path = path });

        Assert.Equal(["conv1.weight"], report.Adapted);
        Assert.Contains("conv1.weight", report.Loaded);
        Assert.Empty(report.Skipped);
        var sd = model.state_dict();
        var expected = source.state_dict()["conv1.weight"].sum(1, keepdim: true);
        Assert.True(sd["conv1.weight"].allclose(expected));
        Assert.True(Equal(source.state_dict()["layer1.0.conv1.weight"], sd["layer1.0.conv1.weight"]));
        // A grey image seen as three equal planes gives the same stem response either way.
        var grey = torch.rand(2, 1, 32, 32);
        using var conv = nn.Conv2d(3, 64, 3, padding: 1, bias: false);
        using var conv1 = nn.Conv2d(1, 64, 3, padding: 1, bias: false);
        using (torch.no_grad())
        {
            conv.weight!.copy_(source.state_dict()["conv1.weight"]);
            conv1.weight!.copy_(sd["conv1.weight"]);
        }
        Assert.True(conv.forward(grey.expand(2, 3, 32, 32)).allclose(conv1.forward(grey), rtol: 1e-4, atol: 1e-5));
    }

    [Fact]
    public void An_imagenet_stem_conv_is_skipped_for_a_cifar_stem_model()
    {
        using var scope = torch.NewDisposeScope();
        using var dir = new TempDir();
        var path = dir.File("imagenet.safetensors");
        using (var source = Create("resnet18", new ImageShape(3, 64, 64), 10, "imagenet")) source.save_safetensors(path);
        using var model = Create("resnet18", Rgb32, 10, "cifar");

        var report = PretrainedWeights.Load(model, new PretrainedSpec { Path = path });

        Assert.Equal(["conv1.weight"], report.Skipped);
        Assert.Contains("layer4.1.conv2.weight", report.Loaded);
    }

    [Fact]
    public void A_missing_file_is_an_InvalidDataException_naming_the_file()
    {
        using var dir = new TempDir();
        using var model = Create("simple-cnn", new ImageShape(1, 16, 16), 10);
        var path = dir.File("nowhere.pt");
        var e = Assert.Throws<InvalidDataException>(() => PretrainedWeights.Load(model, new PretrainedSpec { Path = path }));
        Assert.Contains(path, e.Message);
        Assert.Contains("not found", e.Message);
    }

    [Theory]
    [InlineData("garbage.pt")]
    [InlineData("garbage.safetensors")]
    [InlineData("garbage.bin")]
    [InlineData("garbage.weights")]
    public void A_garbage_file_is_an_InvalidDataException_naming_the_file(string fileName)
    {
        using var scope = torch.NewDisposeScope();
        using var dir = new TempDir();
        var path = dir.File(fileName);
        var bytes = new byte[4096];
        new Random(42).NextBytes(bytes);
        File.WriteAllBytes(path, bytes);
        using var model = Create("simple-cnn", new ImageShape(1, 16, 16), 10);
        var before = Snapshot(model);

        var e = Assert.Throws<InvalidDataException>(() => PretrainedWeights.Load(model, new PretrainedSpec { Path = path }));

        Assert.StartsWith(path, e.Message);
        // Whatever of the file's bytes the reason quotes is escaped, never printed raw.
        Assert.DoesNotContain(e.Message, c => char.IsControl(c) || c == '\uFFFD');
        Assert.All(model.state_dict(), kv => Assert.True(Equal(before[kv.Key], kv.Value), kv.Key));
    }

    [Fact]
    public void A_truncated_torchsharp_file_is_an_InvalidDataException_naming_the_file()
    {
        using var scope = torch.NewDisposeScope();
        using var dir = new TempDir();
        var path = dir.File("model.ckpt");
        using (var source = Create("simple-cnn", new ImageShape(1, 16, 16), 10)) source.save(path);
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
        using var model = Create("simple-cnn", new ImageShape(1, 16, 16), 10);

        var e = Assert.Throws<InvalidDataException>(() => PretrainedWeights.Load(model, new PretrainedSpec { Path = path }));

        Assert.StartsWith(path, e.Message);
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void A_file_with_no_matching_names_is_an_InvalidDataException()
    {
        using var scope = torch.NewDisposeScope();
        using var dir = new TempDir();
        var path = dir.File("other.safetensors");
        Safetensors.SaveStateDict(path, new Dictionary<string, Tensor> { ["encoder.weight"] = torch.ones(3, 3) });
        using var model = Create("simple-cnn", new ImageShape(1, 16, 16), 10);

        var e = Assert.Throws<InvalidDataException>(() => PretrainedWeights.Load(model, new PretrainedSpec { Path = path }));

        Assert.StartsWith(path, e.Message);
        Assert.Contains("no safetensors entry matches", e.Message);
        Assert.Contains("encoder.weight", e.Message);
    }

    [Fact]
    public void Weights_of_another_architecture_are_refused_not_half_loaded()
    {
        using var scope = torch.NewDisposeScope();
        using var dir = new TempDir();
        var path = dir.File("r50.pt");
        using (var source = Create("resnet50", new ImageShape(1, 16, 16), 10, "cifar")) source.save_py(path);
        using var model = Create("resnet18", new ImageShape(1, 16, 16), 10, "cifar");

        var e = Assert.Throws<InvalidDataException>(() => PretrainedWeights.Load(model, new PretrainedSpec { Path = path }));

        Assert.StartsWith(path, e.Message);
        Assert.Contains("another architecture", e.Message);
    }

    [Fact]
    public void Auto_format_is_chosen_by_extension_and_an_unknown_format_is_refused()
    {
        Assert.Equal("pytorch", PretrainedWeights.ResolveFormat("auto", "a/b.pt"));
        Assert.Equal("pytorch", PretrainedWeights.ResolveFormat("auto", "a/b.PTH"));
        Assert.Equal("pytorch", PretrainedWeights.ResolveFormat("auto", "pytorch_model.bin"));
        Assert.Equal("safetensors", PretrainedWeights.ResolveFormat("auto", "model.safetensors"));
        Assert.Equal("torchsharp", PretrainedWeights.ResolveFormat("auto", "best.ckpt"));
        Assert.Equal("torchsharp", PretrainedWeights.ResolveFormat("torchsharp", "x.pt"));
        var e = Assert.Throws<InvalidDataException>(() => PretrainedWeights.ResolveFormat("onnx", "x.onnx"));
        Assert.Contains("unknown weights format 'onnx'", e.Message);
    }

    private static void Save(nn.Module model, string path)
    {
        switch (Path.GetExtension(path))
        {
            case ".pt": model.save_py(path); break;
            case ".safetensors": model.save_safetensors(path); break;
            default: model.save(path); break;
        }
    }
}

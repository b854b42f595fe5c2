using Orchestrator.Data;
using Orchestrator.Trials;
using Orchestrator.Worker.Models;
using TorchSharp;
using TorchSharp.Modules;
using static Orchestrator.Worker.UnitTests.Models.ModelTestSupport;
using static TorchSharp.torch;

namespace Orchestrator.Worker.UnitTests.Models;

public class ModelArchitectureTests
{
    public static TheoryData<string, int, int, string?, int> ShapeCases => new()
    {
        // model, channels, side, stem, classes
        { "simple-cnn", 1, 28, null, 10 },
        { "simple-cnn", 3, 32, null, 100 },
        { "simple-cnn", 3, 30, null, 7 },
        { "resnet18", 1, 28, "cifar", 10 },
        { "resnet18", 3, 32, "cifar", 100 },
        { "resnet18", 3, 64, "imagenet", 10 },
        { "resnet18", 1, 28, "imagenet", 3 },
        { "resnet34", 3, 32, "cifar", 10 },
        { "resnet34", 1, 64, "imagenet", 10 },
        { "resnet50", 1, 28, "cifar", 10 },
        { "resnet50", 3, 64, "imagenet", 5 },
    };

    [Theory]
    [MemberData(nameof(ShapeCases))]
    public void Every_model_maps_a_batch_of_images_to_one_logit_per_class(string name, int channels, int side, string? stem, int classes)
    {
        using var scope = torch.NewDisposeScope();
        using var model = Create(name, new ImageShape(channels, side, side), classes, stem);
        model.train();
        var x = torch.randn(2, channels, side, side);
        var y = model.forward(x);
        Assert.Equal([2L, classes], y.shape);
        Assert.Equal(classes, model.NumClasses);
        Assert.True(y.isfinite().all().ToBoolean());
    }

    [Fact]
    public void ResNet18_with_cifar_stem_and_10_classes_has_torchvision_parameter_count()
    {
        using var scope = torch.NewDisposeScope();
        using var model = Create("resnet18", new ImageShape(3, 32, 32), 10, "cifar");
        Assert.Equal(11_173_962, ParameterCount(model));
    }

    [Fact]
    public void ResNets_with_imagenet_stem_and_1000_classes_have_torchvision_parameter_counts()
    {
        using var scope = torch.NewDisposeScope();
        var shape = new ImageShape(3, 224, 224);
        using (var r18 = Create("resnet18", shape, 1000, "imagenet")) Assert.Equal(11_689_512, ParameterCount(r18));
        using (var r34 = Create("resnet34", shape, 1000, "imagenet")) Assert.Equal(21_797_672, ParameterCount(r34));
        using (var r50 = Create("resnet50", shape, 1000, "imagenet")) Assert.Equal(25_557_032, ParameterCount(r50));
    }

    [Fact]
    public void SimpleCnn_on_3x32x32_has_about_2_1_million_parameters()
    {
        using var scope = torch.NewDisposeScope();
        using var model = Create("simple-cnn", new ImageShape(3, 32, 32), 10);
        // conv 864 + bn 64 + conv 18,432 + bn 128 + fc1 2,097,664 + fc2 5,130.
        Assert.Equal(2_122_282, ParameterCount(model));
    }

    [Fact]
    public void ResNet18_state_dict_names_match_torchvision()
    {
        using var scope = torch.NewDisposeScope();
        using var model = Create("resnet18", new ImageShape(3, 224, 224), 1000, "imagenet");
        var sd = model.state_dict();
        string[] expected =
        [
            "conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked",
            "layer1.0.conv1.weight", "layer1.0.bn1.weight", "layer1.0.bn1.running_var", "layer1.0.conv2.weight", "layer1.1.bn2.bias",
            "layer2.0.downsample.0.weight", "layer2.0.downsample.1.weight", "layer2.0.downsample.1.bias",
            "layer2.0.downsample.1.running_mean", "layer2.0.downsample.1.running_var", "layer2.0.downsample.1.num_batches_tracked",
            "layer3.1.conv2.weight", "layer4.0.downsample.0.weight", "layer4.1.bn2.num_batches_tracked",
            "fc.weight", "fc.bias",
        ];
        Assert.All(expected, k => Assert.True(sd.ContainsKey(k), $"missing {k}"));
        // torchvision's resnet18 state dict: 62 parameters + 20 BatchNorms × 3 buffers.
        Assert.Equal(122, sd.Count);
        Assert.DoesNotContain("layer1.0.downsample.0.weight", sd.Keys);
        Assert.DoesNotContain(sd.Keys, k => k.Contains('_', StringComparison.Ordinal) && k.StartsWith('_'));
        Assert.Equal([1000L, 512], sd["fc.weight"].shape);
        Assert.Equal([64L, 3, 7, 7], sd["conv1.weight"].shape);
        Assert.Equal([128L, 64, 1, 1], sd["layer2.0.downsample.0.weight"].shape);
    }

    [Fact]
    public void ResNet50_state_dict_names_and_shapes_match_torchvision_bottlenecks()
    {
        using var scope = torch.NewDisposeScope();
        using var model = Create("resnet50", new ImageShape(3, 224, 224), 1000, "imagenet");
        var sd = model.state_dict();
        Assert.Equal(320, sd.Count);
        Assert.Equal([64L, 64, 1, 1], sd["layer1.0.conv1.weight"].shape);
        Assert.Equal([256L, 64, 1, 1], sd["layer1.0.conv3.weight"].shape);
        Assert.Equal([256L, 64, 1, 1], sd["layer1.0.downsample.0.weight"].shape);
        // v1.5: the stride sits on the 3×3 conv, so only conv2 of layer2.0 sees 128 → 128 with 3×3.
        Assert.Equal([128L, 128, 3, 3], sd["layer2.0.conv2.weight"].shape);
        Assert.Equal([2048L], sd["layer4.2.bn3.running_var"].shape);
        Assert.Equal([1000L, 2048], sd["fc.weight"].shape);
    }

    [Fact]
    public void ResNet_stem_defaults_to_cifar_up_to_64_pixels_and_imagenet_above()
    {
        Assert.Equal(ResNetStem.Cifar, ModelRegistry.ResolveStem(null, new ImageShape(1, 28, 28)));
        Assert.Equal(ResNetStem.Cifar, ModelRegistry.ResolveStem(null, new ImageShape(3, 64, 64)));
        Assert.Equal(ResNetStem.ImageNet, ModelRegistry.ResolveStem(null, new ImageShape(3, 96, 96)));
        Assert.Equal(ResNetStem.ImageNet, ModelRegistry.ResolveStem("imagenet", new ImageShape(3, 32, 32)));
        Assert.Equal(ResNetStem.Cifar, ModelRegistry.ResolveStem("cifar", new ImageShape(3, 224, 224)));

        using var scope = torch.NewDisposeScope();
        using var small = (ResNet)Create("resnet18", new ImageShape(3, 32, 32), 10);
        Assert.Equal(ResNetStem.Cifar, small.Stem);
        Assert.Equal([64L, 3, 3, 3], small.state_dict()["conv1.weight"].shape);
    }

    [Fact]
    public void Cifar_stem_keeps_resolution_and_imagenet_stem_divides_it_by_four()
    {
        using var scope = torch.NewDisposeScope();
        // The receptive-field difference shows in the last stage: 32 px → 4×4 (cifar) vs 64 px → 2×2 (imagenet).
        using var cifar = Create("resnet18", new ImageShape(3, 32, 32), 10, "cifar");
        using var imagenet = Create("resnet18", new ImageShape(3, 64, 64), 10, "imagenet");
        Assert.Equal(4, LastStageSide(cifar, 32));
        Assert.Equal(2, LastStageSide(imagenet, 64));

        static long LastStageSide(ImageClassifier m, int side)
        {
            long seen = -1;
            var layer4 = m.named_children().Single(c => c.name == "layer4").module;
            var hook = ((Sequential)layer4).register_forward_hook((_, _, output) => { seen = output.shape[2]; return output; });
            using var x = torch.randn(2, 3, side, side);
            using var y = m.forward(x);
            hook.remove();
            return seen;
        }
    }

    [Fact]
    public void ResNet_convs_get_kaiming_normal_fan_out_and_batchnorm_starts_at_identity()
    {
        using var scope = torch.NewDisposeScope();
        using var model = Create("resnet18", new ImageShape(3, 32, 32), 10, "cifar");
        var sd = model.state_dict();
        // fan_out of layer3.0.conv2 = 256·3·3 → std = sqrt(2 / 2304) ≈ 0.0295.
        var std = sd["layer3.0.conv2.weight"].std().ToDouble();
        Assert.InRange(std, 0.0295 * 0.95, 0.0295 * 1.05);
        Assert.True(sd["layer2.1.bn1.weight"].eq(1).all().ToBoolean());
        Assert.True(sd["layer2.1.bn1.bias"].eq(0).all().ToBoolean());
    }

    [Fact]
    public void ResNet_zero_init_residual_zeroes_the_last_batchnorm_of_every_block()
    {
        using var scope = torch.NewDisposeScope();
        using var basic = new ResNet("r", [1, 1, 1, 1], bottleneck: false, 3, 10, ResNetStem.Cifar, zeroInitResidual: true);
        using var bottleneck = new ResNet("r", [1, 1, 1, 1], bottleneck: true, 3, 10, ResNetStem.Cifar, zeroInitResidual: true);
        Assert.True(basic.state_dict()["layer3.0.bn2.weight"].eq(0).all().ToBoolean());
        Assert.True(basic.state_dict()["layer3.0.bn1.weight"].eq(1).all().ToBoolean());
        Assert.True(bottleneck.state_dict()["layer2.0.bn3.weight"].eq(0).all().ToBoolean());
        Assert.True(bottleneck.state_dict()["layer2.0.bn2.weight"].eq(1).all().ToBoolean());
    }

    [Fact]
    public void SimpleCnn_without_batchnorm_has_no_batchnorm_and_treats_each_image_independently()
    {
        using var scope = torch.NewDisposeScope();
        using var model = Create("simple-cnn", new ImageShape(1, 28, 28), 10, batchNorm: false);
        Assert.DoesNotContain(model.state_dict().Keys, k => k.StartsWith("bn", StringComparison.Ordinal));
        model.train();
        var x = torch.randn(4, 1, 28, 28);
        var together = model.forward(x);
        var alone = model.forward(x[1..2]);
        Assert.True(together[1..2].allclose(alone, rtol: 1e-4, atol: 1e-5));
    }

    [Fact]
    public void Dropout_is_active_in_training_and_off_in_evaluation()
    {
        using var scope = torch.NewDisposeScope();
        using var model = Create("simple-cnn", new ImageShape(1, 16, 16), 10, dropout: 0.5, batchNorm: false);
        var x = torch.randn(2, 1, 16, 16);
        model.train();
        Assert.False(model.forward(x).allclose(model.forward(x)));
        model.eval();
        Assert.True(model.forward(x).allclose(model.forward(x)));
    }

    [Fact]
    public void ReplaceHead_gives_a_fresh_head_for_the_new_class_count_and_keeps_the_backbone()
    {
        using var scope = torch.NewDisposeScope();
        using var model = Create("resnet18", new ImageShape(3, 32, 32), 10, "cifar");
        var before = Snapshot(model);
        model.ReplaceHead(5);
        var after = model.state_dict();
        Assert.Equal(5, model.NumClasses);
        Assert.Equal([5L, 512], after["fc.weight"].shape);
        Assert.Equal(before.Count, after.Count);
        Assert.All(before.Where(kv => !kv.Key.StartsWith("fc.", StringComparison.Ordinal)), kv => Assert.True(Equal(kv.Value, after[kv.Key]), kv.Key));
        Assert.Single(model.named_parameters(), p => p.name == "fc.weight");
        Assert.Equal([2L, 5], model.forward(torch.randn(2, 3, 32, 32)).shape);
        Assert.Equal(11_173_962 - 5 * 513, ParameterCount(model));
    }

    [Fact]
    public void FreezeBackbone_leaves_only_head_parameters_trainable()
    {
        using var scope = torch.NewDisposeScope();
        foreach (var name in KnownNames.Models)
        {
            using var model = Create(name, new ImageShape(1, 16, 16), 4, "cifar");
            model.FreezeBackbone();
            var trainable = model.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name).Order().ToArray();
            Assert.Equal([model.HeadName + ".bias", model.HeadName + ".weight"], trainable);
        }
    }
}

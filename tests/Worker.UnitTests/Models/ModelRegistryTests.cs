using Orchestrator.Data;
using Orchestrator.Trials;
using Orchestrator.Worker.Models;
using TorchSharp;

namespace Orchestrator.Worker.UnitTests.Models;

public class ModelRegistryTests
{
    [Fact]
    public void Registry_names_equal_the_names_specs_may_use()
    {
        Assert.Equal(KnownNames.Models, ModelRegistry.Names);
    }

    [Fact]
    public void An_unknown_model_name_is_refused_with_the_known_names()
    {
        var e = Assert.Throws<ArgumentException>(() =>
            ModelRegistry.Create(new ModelSpec { Name = "vgg16" }, new ImageShape(3, 32, 32), 10));
        Assert.StartsWith("unknown model 'vgg16': one of simple-cnn, resnet18, resnet34, resnet50", e.Message);
    }

    [Fact]
    public void An_unknown_stem_is_refused_with_the_known_stems()
    {
        var e = Assert.Throws<ArgumentException>(() =>
            ModelRegistry.Create(new ModelSpec { Name = "resnet18", Stem = "tiny" }, new ImageShape(3, 32, 32), 10));
        Assert.StartsWith("unknown stem 'tiny': one of cifar, imagenet", e.Message);
    }

    [Fact]
    public void Every_registry_model_is_created_on_the_cpu_with_the_requested_head()
    {
        using var scope = torch.NewDisposeScope();
        foreach (var name in ModelRegistry.Names)
        {
            using var model = ModelTestSupport.Create(name, new ImageShape(1, 16, 16), 3, "cifar");
            Assert.All(model.parameters(), p => Assert.Equal(DeviceType.CPU, p.device_type));
            Assert.Equal(3, model.NumClasses);
            Assert.Equal(3, model.state_dict()[model.HeadName + ".weight"].shape[0]);
        }
    }
}

using Orchestrator.Specs;
using Orchestrator.Trials;

namespace Orchestrator.Shared.UnitTests.Trials;

public class TrialSpecYamlTests
{
    private static SpecException Fails(string yaml) => Assert.Throws<SpecException>(() => TrialSpecYaml.Parse(yaml, "trial.yaml"));

    [Fact]
    public async Task Yaml_on_which_the_scanner_repeats_an_error_for_ever_is_a_malformed_yaml_error_not_a_hang()
    {
        // Found by fuzzing: locating the error re-scanned the text, and YamlDotNet's scanner
        // returned the same error token at line 3 without end.
        var text = await File.ReadAllTextAsync(Path.Combine(Orchestrator.TestSupport.RepositoryRoot.Path, "fuzz", "regressions", "trial", "scanner-error-loop.yaml"));
        var e = await Task.Run(() => Assert.Throws<SpecException>(() => TrialSpecYaml.Parse(text, "trial.yaml"))).WaitAsync(TimeSpan.FromSeconds(20));
        Assert.StartsWith("trial.yaml:3:", e.Message, StringComparison.Ordinal);
        Assert.Contains("malformed YAML", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("schedule")]
    [InlineData("optimizer")]
    [InlineData("augment")]
    [InlineData("loss")]
    public void A_section_left_empty_is_an_error_naming_it_not_a_null_reference(string section)
    {
        // Found by fuzzing: "schedule:" with nothing under it deserialised to null.
        var e = Fails($"data: {{ name: fashion-mnist }}\nepochs: 2\n{section}:\n");
        Assert.Equal(section, e.Field);
        Assert.Contains("is empty", e.Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void A_full_trial_file_parses_into_every_field()
    {
        var spec = TrialSpecYaml.Parse("""
            data: { name: cifar10, dir: /data/cifar, limitTrain: 1000, holdout: 0.1 }
            model: { name: resnet18, dropout: 0.2, stem: cifar }
            epochs: 30
            batchSize: 256
            seed: 7
            optimizer: { name: adamw, lr: 0.001, weightDecay: 0.05 }
            schedule: { name: onecycle, pctStart: 0.3 }
            loss: { name: focal, focalGamma: 1.5, classWeights: [balanced] }
            augment: { cropPadding: 4, flip: true, brightness: 0.2, contrast: 0.2, saturation: 0.2 }
            gradClip: 1.0
            checkpoint: { everyEpochs: 5 }
            pretrained: { path: weights.pt, freezeBackbone: true }
            """, "trial.yaml");
        Assert.Equal("cifar10", spec.Data.Name);
        Assert.Equal(1000, spec.Data.LimitTrain);
        Assert.Equal("resnet18", spec.Model.Name);
        Assert.Equal(0.2, spec.Model.Dropout);
        Assert.Equal(30, spec.Epochs);
        Assert.Equal("adamw", spec.Optimizer.Name);
        Assert.Equal(0.05, spec.Optimizer.WeightDecay);
        Assert.Equal("onecycle", spec.Schedule.Name);
        Assert.Equal(["balanced"], spec.Loss.ClassWeights!);
        Assert.True(spec.Augment.Flip);
        Assert.Equal(4, spec.Augment.CropPadding);
        Assert.Equal(5, spec.Checkpoint.EveryEpochs);
        Assert.True(spec.Pretrained!.FreezeBackbone);
    }

    [Fact]
    public void An_unknown_field_is_named_with_its_line()
    {
        var e = Fails("epochs: 3\noptimizer:\n  name: sgd\n  learningRate: 0.1\n");
        Assert.StartsWith("trial.yaml:4:", e.Message);
        Assert.Contains("unknown field 'learningRate'", e.Message);
    }

    [Fact]
    public void A_bad_value_names_the_field_path_and_line()
    {
        var e = Fails("epochs: 3\noptimizer:\n  name: sgd\n  lr: -1\n");
        Assert.StartsWith("trial.yaml:4:", e.Message);
        Assert.Contains("optimizer.lr: must be > 0", e.Message);
        Assert.Equal("optimizer.lr", e.Field);
    }

    [Fact]
    public void A_wrong_type_is_reported_on_its_line()
    {
        var e = Fails("epochs: many\n");
        Assert.StartsWith("trial.yaml:1:", e.Message);
    }

    [Fact]
    public void A_syntax_error_gives_the_line()
    {
        var e = Fails("epochs: 3\nmodel: {name: resnet18\n");
        Assert.StartsWith("trial.yaml:", e.Message);
    }

    [Theory]
    [InlineData("model: { name: vgg16 }", "model.name: unknown model 'vgg16': one of simple-cnn, resnet18, resnet34, resnet50")]
    [InlineData("data: { name: svhn }", "data.name: unknown data set 'svhn'")]
    [InlineData("optimizer: { name: lion }", "optimizer.name: unknown optimizer 'lion'")]
    [InlineData("schedule: { name: cyclic }", "schedule.name: unknown schedule 'cyclic'")]
    [InlineData("loss: { name: hinge }", "loss.name: unknown loss 'hinge'")]
    [InlineData("epochs: 0", "epochs: must be between 1 and 100000")]
    [InlineData("batchSize: -5", "batchSize: must be between 1")]
    [InlineData("data: { holdout: 1.5 }", "data.holdout: must be a fraction")]
    [InlineData("data: { name: imagefolder }", "data.dir: imagefolder data needs data.dir")]
    [InlineData("loss: { classWeights: [1, x] }", "loss.classWeights[1]: 'x' is not a weight")]
    [InlineData("model: { dropout: 1.0 }", "model.dropout: must be in [0, 1)")]
    [InlineData("augment: { cropSize: 224, resizeTo: 200 }", "augment.resizeTo: must be ≥ augment.cropSize")]
    [InlineData("pretrained: { path: '' }", "pretrained.path: is required")]
    public void Each_invalid_setting_is_rejected_with_its_field(string yaml, string expected)
    {
        var e = Fails(yaml);
        Assert.Contains(expected, e.Message);
        Assert.StartsWith("trial.yaml:1:", e.Message);
    }

    [Fact]
    public void An_empty_file_is_rejected()
    {
        Assert.Contains("the file is empty", Fails("").Message);
    }

    [Fact]
    public void A_missing_file_is_one_line()
    {
        var e = Assert.Throws<SpecException>(() => TrialSpecYaml.Load("/nonexistent/trial.yaml"));
        Assert.Equal("/nonexistent/trial.yaml: no such file", e.Message);
    }

    [Fact]
    public void Clone_copies_every_field_and_shares_nothing_mutable()
    {
        var spec = TrialSpecYaml.Parse("""
            data: { name: cifar10, limitTrain: 10 }
            model: { name: resnet18, dropout: 0.1 }
            optimizer: { name: adam, lr: 0.002 }
            schedule: { name: step, stepEpochs: 3 }
            loss: { name: focal, classWeights: [1, 2, 1, 1, 1, 1, 1, 1, 1, 1] }
            augment: { flip: true, cropPadding: 4 }
            checkpoint: { everyEpochs: 2 }
            pretrained: { path: w.pt }
            """, "t.yaml");
        var copy = spec.Clone();
        Assert.Equal(TrialSpecYaml.Serialize(spec), TrialSpecYaml.Serialize(copy));
        copy.Data.Name = "mnist";
        copy.Model.Dropout = 0.5;
        copy.Optimizer.Lr = 1;
        copy.Schedule.StepEpochs = 9;
        copy.Loss.ClassWeights!.Add("3");
        copy.Augment.Flip = false;
        copy.Checkpoint.EveryEpochs = 7;
        copy.Pretrained!.Path = "other.pt";
        Assert.Equal("cifar10", spec.Data.Name);
        Assert.Equal(0.1, spec.Model.Dropout);
        Assert.Equal(0.002, spec.Optimizer.Lr);
        Assert.Equal(3, spec.Schedule.StepEpochs);
        Assert.Equal(["1", "2", "1", "1", "1", "1", "1", "1", "1", "1"], spec.Loss.ClassWeights!);
        Assert.True(spec.Augment.Flip);
        Assert.Equal(2, spec.Checkpoint.EveryEpochs);
        Assert.Equal("w.pt", spec.Pretrained!.Path);
    }

    [Fact]
    public void Serialize_then_parse_round_trips()
    {
        var spec = new TrialSpec { Epochs = 9, Seed = 4 };
        spec.Loss.ClassWeights = ["1", "2.5"];
        spec.Data.Name = "synthetic"; // no fixed class count: any number of weights is checked by the trial
        var copy = TrialSpecYaml.Parse(TrialSpecYaml.Serialize(spec), null);
        Assert.Equal(9, copy.Epochs);
        Assert.Equal("synthetic", copy.Data.Name);
        Assert.Equal(["1", "2.5"], copy.Loss.ClassWeights!);
    }
}

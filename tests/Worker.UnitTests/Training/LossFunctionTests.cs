using Orchestrator.Trials;
using Orchestrator.Worker.Native;
using Orchestrator.Worker.Training;
using Orchestrator.Worker.UnitTests.Support;
using TorchSharp;

namespace Orchestrator.Worker.UnitTests.Training;

public class LossFunctionTests
{
    public LossFunctionTests() => TorchRuntime.Initialize();

    private static (torch.Tensor Logits, torch.Tensor Labels) Batch()
    {
        var logits = torch.tensor(new float[] { 2, 0, -1, 0.5f, 0.2f, 1.5f, -0.3f, 3, 0 }, [3, 3]);
        var labels = torch.tensor(new long[] { 0, 2, 1 });
        return (logits, labels);
    }

    [Fact]
    public void Focal_loss_with_gamma_zero_equals_cross_entropy()
    {
        using var scope = torch.NewDisposeScope();
        var (x, y) = Batch();
        using var ce = new LossFunction(new LossSpec(), null, torch.CPU);
        using var focal = new LossFunction(new LossSpec { Name = "focal", FocalGamma = 0 }, null, torch.CPU);
        Assert.Equal(ce.Compute(x, y).ToSingle(), focal.Compute(x, y).ToSingle(), 5);
    }

    [Fact]
    public void Focal_loss_down_weights_easy_examples()
    {
        using var scope = torch.NewDisposeScope();
        var (x, y) = Batch();
        using var ce = new LossFunction(new LossSpec(), null, torch.CPU);
        using var focal = new LossFunction(new LossSpec { Name = "focal", FocalGamma = 2 }, null, torch.CPU);
        Assert.True(focal.Compute(x, y).ToSingle() < 0.7 * ce.Compute(x, y).ToSingle());
    }

    [Fact]
    public void Class_weights_change_the_loss_toward_the_weighted_class()
    {
        using var scope = torch.NewDisposeScope();
        var (x, y) = Batch();
        using var plain = new LossFunction(new LossSpec(), null, torch.CPU);
        using var weighted = new LossFunction(new LossSpec(), [1f, 1f, 10f], torch.CPU);
        // Sample 1 (class 2) is the worst-classified one; weighting class 2 raises the mean loss.
        Assert.True(weighted.Compute(x, y).ToSingle() > plain.Compute(x, y).ToSingle());
    }

    [Fact]
    public void Balanced_weights_are_inverse_class_frequency()
    {
        var data = TinyData.Quadrants(400, 11);
        var counts = Enumerable.Range(0, 4).Select(c => Enumerable.Range(0, 400).Count(i => data.GetLabel(i) == c)).ToArray();
        var w = LossFunction.ResolveClassWeights(new LossSpec { ClassWeights = ["balanced"] }, data, 4)!;
        for (var c = 0; c < 4; c++) Assert.Equal(400.0 / (4 * counts[c]), w[c], 5);
    }

    [Fact]
    public void Wrong_number_of_class_weights_is_a_spec_error()
    {
        var data = TinyData.Quadrants(10, 1);
        var e = Assert.Throws<Orchestrator.Specs.SpecException>(() =>
            LossFunction.ResolveClassWeights(new LossSpec { ClassWeights = ["1", "2"] }, data, 4));
        Assert.Contains("2 weights given for 4 classes", e.Message);
    }

    [Fact]
    public void Label_smoothing_raises_the_loss_of_confident_correct_predictions()
    {
        using var scope = torch.NewDisposeScope();
        var x = torch.tensor(new float[] { 10, 0, 0 }, [1, 3]);
        var y = torch.tensor(new long[] { 0 });
        using var plain = new LossFunction(new LossSpec(), null, torch.CPU);
        using var smooth = new LossFunction(new LossSpec { LabelSmoothing = 0.1 }, null, torch.CPU);
        Assert.True(smooth.Compute(x, y).ToSingle() > plain.Compute(x, y).ToSingle() + 0.1);
    }
}

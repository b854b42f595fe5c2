using Orchestrator.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace Orchestrator.Worker.UnitTests.Models;

public class LearningSanityTests
{
    [Fact]
    public void SimpleCnn_memorises_32_fixed_random_images_with_a_few_adam_steps()
    {
        using var outer = torch.NewDisposeScope();
        using var model = ModelTestSupport.Create("simple-cnn", new ImageShape(1, 16, 16), 10, seed: 123);
        torch.manual_seed(7);
        var images = torch.randn(32, 1, 16, 16);
        var labels = torch.randint(0, 10, [32]);
        using var optimizer = optim.Adam(model.parameters(), 1e-3);
        model.train();

        var first = EpochLoss();
        var last = first;
        for (var epoch = 0; epoch < 15; epoch++) last = EpochLoss();

        // Chance level is ln 10 ≈ 2.3; memorising the set must take the loss far below it.
        Assert.InRange(first, 1.5, 4.0);
        Assert.True(last < 0.2, $"loss went from {first:F3} to {last:F3}");
        model.eval();
        using (torch.no_grad())
        {
            var accuracy = model.forward(images).argmax(1).eq(labels).to_type(ScalarType.Float32).mean().ToSingle();
            Assert.True(accuracy >= 0.95f, $"train accuracy {accuracy}");
        }

        double EpochLoss()
        {
            double total = 0;
            for (var start = 0; start < 32; start += 8)
            {
                using var scope = torch.NewDisposeScope();
                optimizer.zero_grad();
                var loss = nn.functional.cross_entropy(model.forward(images[start..(start + 8)]), labels[start..(start + 8)]);
                loss.backward();
                optimizer.step();
                total += loss.ToDouble();
            }
            return total / 4;
        }
    }
}

using Orchestrator.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace Orchestrator.Worker.UnitTests.Models;

public class ModelMemoryTests
{
    [Theory]
    [InlineData("simple-cnn")]
    [InlineData("resnet18")]
    public void Training_steps_inside_a_dispose_scope_leave_no_live_tensors_behind(string name)
    {
        using var model = ModelTestSupport.Create(name, new ImageShape(1, 16, 16), 10, "cifar", dropout: 0.2);
        using var optimizer = optim.SGD(model.parameters(), 0.01, momentum: 0.9);
        model.train();
        // The first step creates the optimizer's momentum buffers, which are meant to live on.
        Step();
        var live = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        for (var i = 0; i < 3; i++) Step();
        Assert.Equal(live, DisposeScopeManager.Statistics.ThreadTotalLiveCount);

        void Step()
        {
            using var scope = torch.NewDisposeScope();
            var x = torch.randn(4, 1, 16, 16);
            var y = torch.tensor(new long[] { 0, 1, 2, 3 });
            optimizer.zero_grad();
            nn.functional.cross_entropy(model.forward(x), y).backward();
            optimizer.step();
        }
    }
}

using Orchestrator.TensorBoard;
using Orchestrator.TensorBoard.Protos.HParams;
using Orchestrator.TestSupport;
using Orchestrator.Trials;
using Orchestrator.Worker.Native;
using Orchestrator.Worker.Training;
using Orchestrator.Worker.UnitTests.Support;
using TorchSharp;

namespace Orchestrator.Worker.UnitTests.Training;

[Collection(SerialTorchCollection.Name)]
public sealed class TensorBoardObserverTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("orch-tb-run-").FullName;

    public TensorBoardObserverTests() => TorchRuntime.Initialize();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void A_training_run_logs_every_epoch_and_its_hyperparameters()
    {
        var spec = new TrialSpec
        {
            Data = new DataSpec { Name = "synthetic" },
            Epochs = 3,
            BatchSize = 32,
            Seed = 1,
            Optimizer = new OptimizerSpec { Name = "adam", Lr = 0.003 },
        };
        var board = Path.Combine(_dir, "tb", "run-1");
        IReadOnlyList<EpochMetrics> history;
        using (var observer = new TensorBoardObserver(board, spec))
        using (var session = new TrainingSession(spec, TinyData.Splits(256, 64), torch.CPU, Path.Combine(_dir, "run"), observer))
        {
            session.Run();
            history = session.History;
        }

        var events = TensorBoardEvents.ReadDir(board);
        var accuracy = TensorBoardEvents.Scalars(events, TensorBoardTags.For("val_accuracy"));
        Assert.Equal([1L, 2L, 3L], accuracy.Keys);
        foreach (var m in history) Assert.Equal((float)m.ValAccuracy, accuracy[m.Epoch]);
        foreach (var metric in new[] { "train_loss", "train_accuracy", "val_loss", "lr" })
            Assert.Equal(3, TensorBoardEvents.Scalars(events, TensorBoardTags.For(metric)).Count);
        Assert.Equal((float)history[0].LearningRate, TensorBoardEvents.Scalars(events, "train/learning_rate")[1]);

        var start = TensorBoardEvents.HParams(events, HParamsSummaries.SessionStartTag)!.SessionStartInfo;
        Assert.Equal(0.003, start.Hparams["optimizer.lr"].NumberValue);
        Assert.Equal("adam", start.Hparams["optimizer.name"].StringValue);
        Assert.Equal(32, start.Hparams["batchSize"].NumberValue);
        Assert.Equal(Status.Success, TensorBoardEvents.HParams(events, HParamsSummaries.SessionEndTag)!.SessionEndInfo.Status);
    }
}

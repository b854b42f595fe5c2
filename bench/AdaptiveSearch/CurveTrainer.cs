using System.Diagnostics;
using Orchestrator.Data;
using Orchestrator.Trials;
using Orchestrator.Worker.Training;
using TorchSharp;

namespace Orchestrator.Bench.AdaptiveSearch;

/// <summary>Trains a trial to its last epoch and returns its validation accuracy after each epoch.</summary>
internal sealed class CurveTrainer(int images, int test)
{
    private readonly Stopwatch _clock = new();
    private DatasetSplits? _data;

    public int EpochsTrained { get; private set; }

    public double Seconds => _clock.Elapsed.TotalSeconds;

    public double[] Train(TrialSpec spec)
    {
        spec.Data.LimitTrain = images;
        spec.Data.LimitTest = test;
        spec.Data.Download = false;
        _data ??= DatasetLoader.Load(spec.Data, 1, null, CancellationToken.None);
        var dir = Directory.CreateTempSubdirectory("orch-bench-adaptive-").FullName;
        _clock.Start();
        try
        {
            using var session = new TrainingSession(spec, _data, torch.CPU, dir);
            session.Run();
            EpochsTrained += session.History.Count;
            // A diverged run reports NaN: the searcher treats it as the worst result.
            return [.. session.History.Select(m => m.ValAccuracy)];
        }
        finally
        {
            _clock.Stop();
            Directory.Delete(dir, recursive: true);
        }
    }
}

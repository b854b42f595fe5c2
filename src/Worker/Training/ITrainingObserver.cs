namespace Orchestrator.Worker.Training;

/// <summary>Progress of a training run, reported on the training thread: keep handlers quick and non-blocking.</summary>
public interface ITrainingObserver
{
    void OnRunStart(RunInfo info) { }
    void OnEpochStart(int epoch, int epochs, int batches) { }
    /// <summary>Every <see cref="TrainingSession.LogEvery"/> batches and at the end of an epoch.</summary>
    void OnBatches(BatchProgress progress) { }
    void OnEpochEnd(EpochMetrics metrics) { }
    void OnCheckpoint(string path, CheckpointKind kind) { }
}

public enum CheckpointKind { Last, Best }

/// <summary>What a run is about to do.</summary>
public sealed record RunInfo(string Model, long Parameters, string Dataset, int TrainCount, int ValidationCount, string Device, int StartEpoch, int Epochs, string RunDir);

/// <summary>Running figures inside an epoch.</summary>
public sealed record BatchProgress(int Epoch, int Batch, int Batches, double Loss, double Accuracy, double ImagesPerSecond, double LearningRate);

/// <summary>The outcome of a run.</summary>
public sealed record TrainingResult(
    EpochMetrics Last,
    double BestValAccuracy,
    int BestEpoch,
    int Epochs,
    double Seconds,
    string? BestCheckpoint,
    string? LastCheckpoint,
    string RunDir);

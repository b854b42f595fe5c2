namespace Orchestrator.Worker.Training;

/// <summary>Hands every training event to several observers, in order (the console, then TensorBoard…).</summary>
public sealed class CompositeObserver(params ITrainingObserver[] observers) : ITrainingObserver
{
    public void OnRunStart(RunInfo info)
    {
        foreach (var o in observers) o.OnRunStart(info);
    }

    public void OnEpochStart(int epoch, int epochs, int batches)
    {
        foreach (var o in observers) o.OnEpochStart(epoch, epochs, batches);
    }

    public void OnBatches(BatchProgress progress)
    {
        foreach (var o in observers) o.OnBatches(progress);
    }

    public void OnEpochEnd(EpochMetrics metrics)
    {
        foreach (var o in observers) o.OnEpochEnd(metrics);
    }

    public void OnCheckpoint(string path, CheckpointKind kind)
    {
        foreach (var o in observers) o.OnCheckpoint(path, kind);
    }
}

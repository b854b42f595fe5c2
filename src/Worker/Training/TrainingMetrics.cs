using System.Diagnostics.Metrics;

namespace Orchestrator.Worker.Training;

/// <summary>
/// The worker's training metrics (meter "Orchestrator.Worker"), exported by `orch worker
/// --metrics-port`. Recording is a few nanoseconds per step; nothing here reads the device.
/// </summary>
public static class TrainingMetrics
{
    public const string MeterName = "Orchestrator.Worker";

    private static readonly Meter Meter = new(MeterName, "1.0");

    private static readonly Counter<long> Samples = Meter.CreateCounter<long>("orch_worker_samples", "{sample}", "Training samples processed.");

    private static readonly Histogram<double> StepDuration = Meter.CreateHistogram("orch_worker_step_duration", "s",
        "Wall time between consecutive optimiser steps (includes waiting for data).",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5] });

    private static readonly Histogram<double> DataWait = Meter.CreateHistogram("orch_worker_data_wait", "s",
        "Time the training thread waited for the next batch from the loader.",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.00001, 0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1] });

    private static double _samplesPerSecond;

    static TrainingMetrics()
    {
        Meter.CreateObservableGauge("orch_worker_samples_per_second", () => Volatile.Read(ref _samplesPerSecond), "{sample}/s",
            "Training throughput of the running trial, over its current epoch so far.");
    }

    public static void StepCompleted(int samples, TimeSpan sinceLastStep)
    {
        Samples.Add(samples);
        StepDuration.Record(sinceLastStep.TotalSeconds);
    }

    public static void WaitedForData(TimeSpan wait) => DataWait.Record(wait.TotalSeconds);

    public static void Throughput(double samplesPerSecond) => Volatile.Write(ref _samplesPerSecond, samplesPerSecond);
}

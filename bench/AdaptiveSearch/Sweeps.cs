using System.Globalization;
using Orchestrator.Sweeps;

namespace Orchestrator.Bench.AdaptiveSearch;

/// <summary>The benchmark's sweep: the small CNN over a log-uniform learning rate, a dropout range and a log-uniform weight decay.</summary>
internal static class Sweeps
{
    public static string Yaml(string method, int trials, int epochs, int parallel, int seed, int images, int test, string? earlyStopping) =>
        string.Create(CultureInfo.InvariantCulture, $"""
            name: bench-{method}
            data: {"{"} name: fashion-mnist, limitTrain: {images}, limitTest: {test} {"}"}
            model: {"{"} name: simple-cnn {"}"}
            trial:
              epochs: {epochs}
              batchSize: 64
              optimizer: {"{"} name: sgd, momentum: 0.9 {"}"}
              schedule: {"{"} name: cosine {"}"}
            parameters:
              optimizer.lr: {"{"} min: 1.0e-4, max: 0.5, distribution: log-uniform {"}"}
              optimizer.weightDecay: {"{"} min: 1.0e-6, max: 1.0e-2, distribution: log-uniform {"}"}
              model.dropout: {"{"} min: 0.0, max: 0.6 {"}"}
            search:
              method: {method}
              maxTrials: {trials}
              parallelTrials: {parallel}
              seed: {seed}
            {(earlyStopping is null ? "" : "  earlyStopping: " + earlyStopping)}
            objective: {"{"} metric: val_accuracy, goal: maximize {"}"}
            """);

    public static ValidatedSweep Parse(string yaml) => ValidatedSweep.Parse(yaml, "bench.yaml", new SweepLimits(int.MaxValue, int.MaxValue, int.MaxValue));
}

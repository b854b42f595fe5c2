using Orchestrator.Specs;
using Orchestrator.Sweeps;

namespace Orchestrator.Shared.UnitTests.Sweeps;

/// <summary>Small helpers: a valid sweep file to vary, and parse-or-fail shorthands.</summary>
internal static class SweepYaml
{
    public const string Grid = """
        name: lr-dropout
        data: { name: fashion-mnist, limitTrain: 600, limitTest: 100 }
        model: { name: simple-cnn }
        trial:
          epochs: 2
          batchSize: 64
        parameters:
          optimizer.lr: { values: [0.01, 0.05, 0.1] }
          model.dropout: { min: 0.0, max: 0.5, step: 0.25 }
          optimizer.name: adamw
        search: { method: grid, maxTrials: 20, parallelTrials: 2 }
        """;

    public const string Random = """
        name: random-sweep
        model: { name: simple-cnn }
        parameters:
          optimizer.lr: { values: [0.01, 0.05, 0.1] }
          model.dropout: { min: 0.0, max: 0.5 }
          optimizer.weightDecay: { min: 1.0e-6, max: 1.0e-2, distribution: log-uniform }
          batchSize: { min: 32, max: 256, step: 32, type: int }
          epochs: { min: 1, max: 20 }
        search: { method: random, maxTrials: 50, seed: 7 }
        objective: { metric: val_loss }
        """;

    public static ValidatedSweep Parse(string yaml, SweepLimits? limits = null) =>
        ValidatedSweep.Parse(yaml, "sweep.yaml", limits ?? new SweepLimits());

    public static SpecException Fails(string yaml, SweepLimits? limits = null) =>
        Assert.Throws<SpecException>(() => Parse(yaml, limits));
}

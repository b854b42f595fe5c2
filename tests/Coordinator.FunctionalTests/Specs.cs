namespace Orchestrator.Coordinator.FunctionalTests;

/// <summary>Sweep files for the tests: synthetic data and the small CNN (the coordinator only validates them).</summary>
public static class Specs
{
    /// <summary>
    /// A grid sweep over optimizer.lr with the given values; each trial a gang of
    /// <paramref name="workers"/> (at least <paramref name="minWorkers"/> when re-queued), each rank
    /// with <paramref name="gpusPerWorker"/> GPUs (none: CPU).
    /// </summary>
    public static string Grid(
        string name,
        IReadOnlyList<double> lrs,
        int parallelTrials = 1,
        int maxFailedTrials = 3,
        double? target = null,
        int workers = 1,
        int? minWorkers = null,
        int gpusPerWorker = 0) =>
        $$"""
        name: {{name}}
        data: { name: synthetic }
        model: { name: simple-cnn }
        trial:
          epochs: 2
          batchSize: 32
        parameters:
          optimizer.lr: { values: [{{string.Join(", ", lrs.Select(v => v.ToString(System.Globalization.CultureInfo.InvariantCulture)))}}] }
        search: { method: grid, maxTrials: {{lrs.Count}}, parallelTrials: {{parallelTrials}}, maxFailedTrials: {{maxFailedTrials}} }
        objective: { metric: val_accuracy, goal: maximize{{(target is { } t ? ", target: " + t.ToString(System.Globalization.CultureInfo.InvariantCulture) : "")}} }
        resources: { workers: {{workers}}{{(minWorkers is { } m ? $", minWorkers: {m}" : "")}}{{(gpusPerWorker > 0 ? $", gpusPerWorker: {gpusPerWorker}" : "")}} }
        """;

    /// <summary>n learning rates, 0.01 apart: a grid of n trials.</summary>
    public static IReadOnlyList<double> Lrs(int n) => [.. Enumerable.Range(1, n).Select(i => i / 100.0)];

    /// <summary>A 2 × 2 grid (lr × dropout), 4 trials.</summary>
    public static string Grid2x2(string name, int parallelTrials) =>
        $$"""
        name: {{name}}
        data: { name: synthetic }
        model: { name: simple-cnn }
        trial:
          epochs: 2
          batchSize: 32
        parameters:
          optimizer.lr: { values: [0.02, 0.1] }
          model.dropout: { values: [0.0, 0.25] }
        search: { method: grid, maxTrials: 4, parallelTrials: {{parallelTrials}}, maxFailedTrials: 1 }
        objective: { metric: val_accuracy, goal: maximize }
        """;
}

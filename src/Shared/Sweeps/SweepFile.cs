using Orchestrator.Trials;

namespace Orchestrator.Sweeps;

// The sweep file as YAML reads it, before validation. Nullable fields tell "not written" from a
// value, so that defaults can depend on other fields (minWorkers = workers).

internal sealed class SweepFile
{
    public string? Name { get; set; }
    public DataSpec? Data { get; set; }
    public ModelSpec? Model { get; set; }
    public TrialSpec? Trial { get; set; }
    // Values are a string (a fixed value), a mapping (a distribution) or a list (an error): read
    // as plain objects and checked by hand so that each form gets its own message.
    public Dictionary<string, object?>? Parameters { get; set; }
    public SearchSection? Search { get; set; }
    public ObjectiveSection? Objective { get; set; }
    public ResourcesSection? Resources { get; set; }
}

internal sealed class SearchSection
{
    public string? Method { get; set; }
    public int? MaxTrials { get; set; }
    public int? ParallelTrials { get; set; }
    public int? MaxFailedTrials { get; set; }
    public int? Seed { get; set; }
    public EarlyStoppingSection? EarlyStopping { get; set; }
    public string? WarmStartFrom { get; set; }
    public TpeSection? Tpe { get; set; }
}

internal sealed class TpeSection
{
    public int? StartupTrials { get; set; }
    public int? Candidates { get; set; }
    public double? Gamma { get; set; }
}

internal sealed class EarlyStoppingSection
{
    public string? Method { get; set; }
    public int? ReductionFactor { get; set; }
    public int? MinEpochs { get; set; }
    public int? MaxEpochs { get; set; }
    public int? Rungs { get; set; }
    public int? Brackets { get; set; }
    public int? GraceEpochs { get; set; }
    public int? MinTrials { get; set; }
}

internal sealed class ObjectiveSection
{
    public string? Metric { get; set; }
    public string? Goal { get; set; }
    public double? Target { get; set; }
}

internal sealed class ResourcesSection
{
    public int? Workers { get; set; }
    public int? MinWorkers { get; set; }
    public int? GpusPerWorker { get; set; }
    public string? Aggregation { get; set; }
    public string? Wire { get; set; }
}

using System.Text.Json;
using System.Text.Json.Serialization;

namespace Orchestrator.Sweeps;

/// <summary>One trial as the searcher knows it (<see cref="Searcher.Trials"/>).</summary>
public readonly record struct SearcherTrial(int Index, int? LastEpoch, bool Exited, bool Stopped);

/// <summary>The searcher's persisted state (see <see cref="Searcher.SaveState"/>).</summary>
internal sealed class SearcherState
{
    public int Version { get; set; }
    public string Method { get; set; } = "";
    /// <summary>Guards against restoring a state into a different spec.</summary>
    public string SpecSha256 { get; set; } = "";
    public bool Started { get; set; }
    public ulong RandomState { get; set; }
    public int Failed { get; set; }
    /// <summary>Trials added to the budget by orch extend.</summary>
    public int ExtraTrials { get; set; }
    public double? Best { get; set; }
    public int? BestTrial { get; set; }
    public string? ShutdownReason { get; set; }
    public bool ShutdownFailed { get; set; }
    public List<TrialBook> Trials { get; set; } = [];
    public JsonElement MethodState { get; set; }
    /// <summary>The early-stopping rule's state; absent without a rule.</summary>
    public JsonElement? StoppingState { get; set; }
    /// <summary>The warm start's observations, kept so that a restored searcher does not need the earlier sweep.</summary>
    public List<SearchObservation> Prior { get; set; } = [];
}

/// <summary>What the searcher knows of one trial.</summary>
internal sealed class TrialBook
{
    public int Index { get; set; }
    /// <summary>The last epoch reported; reports at or before it are duplicates.</summary>
    public int? LastEpoch { get; set; }
    /// <summary>The objective reported at <see cref="LastEpoch"/> (NaN for a diverged trial, written "NaN").</summary>
    public double? LastObjective { get; set; }
    public bool Exited { get; set; }
    public bool Succeeded { get; set; }
    /// <summary>Stopped early (by the rule or a user); it exited then.</summary>
    public bool Stopped { get; set; }

    public TrialBook Copy() => (TrialBook)MemberwiseClone();
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, UseStringEnumConverter = true,
    NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals)]
[JsonSerializable(typeof(SearcherState))]
internal sealed partial class SearcherJsonContext : JsonSerializerContext;

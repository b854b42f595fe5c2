namespace Orchestrator.Coordinator.Aggregation;

/// <summary>
/// Who a rank's gradient stream belongs to and how its buffers are cut (the domain's copy of the
/// stream header both transports open with): the trial attempt, the rank, the world size, the
/// largest buffer (0: the coordinator's limit), the floats per chunk and the wire format.
/// </summary>
public sealed record GradientStreamSpec(string TrialId, long FencingToken, int Rank, int WorldSize, long MaxBufferFloats, int ChunkFloats, bool Bf16);

using Microsoft.Extensions.Logging;
using Orchestrator.Data;
using Orchestrator.Trials;
using Orchestrator.Protocol.V1;
using Orchestrator.Worker.Distributed;

namespace Orchestrator.Worker.Host;

/// <summary>
/// What a <see cref="TrialRunner"/> needs of the worker that runs it, and nothing more: where and
/// how trials run, a way to tell the coordinator, its data sets, checkpoints and gradient
/// exchange, and a call when the trial ends. <see cref="WorkerAgent"/> implements it; the runner
/// never sees the agent itself.
/// </summary>
internal interface ITrialHost
{
    /// <summary>The worker's settings (work folder, device, data folder or fetching).</summary>
    WorkerAgentOptions Options { get; }

    ILogger Logger { get; }

    /// <summary>Queues a report or an outcome for the coordinator (sent now, or on the next connection).</summary>
    void Send(WorkerMessage message);

    /// <summary>Brings a data set from the coordinator into the worker's cache.</summary>
    Task<FetchResult> FetchDataAsync(DataSpec data, CancellationToken ct);

    /// <summary>The local path of a shipped plug-in (<c>bundle:…</c>), fetched from the coordinator and verified if need be.</summary>
    Task<string> FetchPluginAsync(string reference, CancellationToken ct);

    /// <summary>Stores a checkpoint on the coordinator, retrying until it is stored; a refusal (the lease is lost) throws.</summary>
    Task UploadCheckpointAsync(CheckpointHeader header, string path, CancellationToken ct);

    /// <summary>Downloads the stored checkpoint of a leased trial to <paramref name="path"/>, verified.</summary>
    Task DownloadCheckpointAsync(TrialLease lease, string path, CancellationToken ct);

    /// <summary>Joins the gradient exchange of a data-parallel trial (the coordinator's token filled in).</summary>
    Task<IAllReduce> JoinGradientExchangeAsync(GradientTransportRequest request, CancellationToken ct);

    /// <summary>The trial thread ended (its outcome already sent); <paramref name="summary"/> says how, for people.</summary>
    void Ended(TrialRunner runner, string summary);
}

using Grpc.Core;
using Orchestrator.Coordinator.Checkpoints;
using Orchestrator.Coordinator.Domain;
using Orchestrator.Coordinator.Events;
using Orchestrator.Coordinator.State;
using Orchestrator.Coordinator.Sweeps;
using Orchestrator.Coordinator.Workers;
using Orchestrator.Protocol.V1;

namespace Orchestrator.Coordinator.Grpc;

/// <summary>The user API: thin — validate the request, call the domain, map the result.</summary>
public sealed class SweepsService(
    SweepManager sweeps,
    IStateStore store,
    SweepEvents events,
    WorkerRegistry workers,
    CheckpointStore checkpoints,
    Scheduling.PendingReasons pendingReasons,
    Logs.TrialLogs logs) : Protocol.V1.Sweeps.SweepsBase
{
    private const int MaxSpecBytes = 1 << 20;

    public override async Task<Sweep> SubmitSweep(SubmitSweepRequest request, ServerCallContext context)
    {
        if (string.IsNullOrWhiteSpace(request.SpecYaml)) throw Errors.Invalid("spec_yaml is empty");
        if (request.SpecYaml.Length > MaxSpecBytes) throw Errors.Invalid($"the sweep file is larger than {MaxSpecBytes} bytes");
        var fileName = string.IsNullOrWhiteSpace(request.FileName) ? "sweep.yaml" : Path.GetFileName(request.FileName);
        var sweep = await sweeps.SubmitAsync(request.SpecYaml, fileName, context.CancellationToken).ConfigureAwait(false);
        return await ViewAsync(sweep, context.CancellationToken).ConfigureAwait(false);
    }

    public override async Task<Sweep> GetSweep(GetSweepRequest request, ServerCallContext context) =>
        await ViewAsync(await FindAsync(request.SweepId, context.CancellationToken).ConfigureAwait(false), context.CancellationToken).ConfigureAwait(false);

    public override async Task<ListSweepsResponse> ListSweeps(ListSweepsRequest request, ServerCallContext context)
    {
        var response = new ListSweepsResponse();
        foreach (var s in (await store.ListSweepsAsync(context.CancellationToken).ConfigureAwait(false)).Reverse())
            response.Sweeps.Add(await ViewAsync(s, context.CancellationToken).ConfigureAwait(false));
        return response;
    }

    public override async Task<Sweep> PauseSweep(PauseSweepRequest request, ServerCallContext context) =>
        await ViewAsync(await sweeps.PauseAsync(request.SweepId, context.CancellationToken).ConfigureAwait(false)
                        ?? throw Errors.NotFound($"no sweep '{request.SweepId}'"), context.CancellationToken).ConfigureAwait(false);

    public override async Task<Sweep> ResumeSweep(ResumeSweepRequest request, ServerCallContext context) =>
        await ViewAsync(await sweeps.ResumeAsync(request.SweepId, context.CancellationToken).ConfigureAwait(false)
                        ?? throw Errors.NotFound($"no sweep '{request.SweepId}'"), context.CancellationToken).ConfigureAwait(false);

    public override async Task<Sweep> ExtendSweep(ExtendSweepRequest request, ServerCallContext context)
    {
        if ((request.Trials != 0) == (request.Epochs != 0)) throw Errors.Invalid("give exactly one of trials (more trials) and epochs (more epochs per trial)");
        if (request.Trials < 0) throw Errors.Invalid($"trials: extend by at least one trial (got {request.Trials})");
        if (request.Epochs < 0) throw Errors.Invalid($"epochs: must be more than the trials' epochs now (got {request.Epochs})");
        var extended = request.Trials > 0
            ? await sweeps.ExtendAsync(request.SweepId, request.Trials, context.CancellationToken).ConfigureAwait(false)
            : await sweeps.ExtendEpochsAsync(request.SweepId, request.Epochs, context.CancellationToken).ConfigureAwait(false);
        return await ViewAsync(extended ?? throw Errors.NotFound($"no sweep '{request.SweepId}'"), context.CancellationToken).ConfigureAwait(false);
    }

    public override async Task<Trial> StopTrial(StopTrialRequest request, ServerCallContext context)
    {
        var trial = await sweeps.StopTrialAsync(request.TrialId, context.CancellationToken).ConfigureAwait(false)
                    ?? throw Errors.NotFound($"no trial '{request.TrialId}'");
        return Mapping.ToProto(trial, checkpoints, pendingReasons);
    }

    public override async Task<Sweep> CancelSweep(CancelSweepRequest request, ServerCallContext context)
    {
        var sweep = await sweeps.CancelAsync(request.SweepId, context.CancellationToken).ConfigureAwait(false)
                    ?? throw Errors.NotFound($"no sweep '{request.SweepId}'");
        return await ViewAsync(sweep, context.CancellationToken).ConfigureAwait(false);
    }

    /// <summary>The largest page ListTrials returns.</summary>
    public const int MaxPageSize = 5000;

    public override async Task<ListTrialsResponse> ListTrials(ListTrialsRequest request, ServerCallContext context)
    {
        var ct = context.CancellationToken;
        var sweep = await FindAsync(request.SweepId, ct).ConfigureAwait(false);
        var response = new ListTrialsResponse();
        if (request.PageSize < 0) throw Errors.Invalid("page_size must not be negative");
        if (!Enum.IsDefined(request.State)) throw Errors.Invalid($"state {(int)request.State} is not a trial state");
        if (request.PageSize == 0)
        {
            var spec = sweeps.TrySpecOf(sweep);
            var trials = await store.ListTrialsAsync(sweep.Id, ct).ConfigureAwait(false);
            var maximize = spec?.Maximize ?? true;
            response.Trials.AddRange(TrialRanking.BestFirst(trials, maximize).Select(t => Mapping.ToProto(t, checkpoints, pendingReasons)));
            return response;
        }
        var after = -1;
        if (request.PageToken.Length > 0 && (!int.TryParse(request.PageToken, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out after)))
            throw Errors.Invalid($"page_token '{request.PageToken}' is not one this server handed out");
        var size = Math.Min(request.PageSize, MaxPageSize);
        var query = new TrialPageQuery(after, size, request.State == TrialState.Unspecified ? null : Mapping.FromProto(request.State));
        var page = await store.ListTrialsPageAsync(sweep.Id, query, ct).ConfigureAwait(false);
        response.Trials.AddRange(page.Select(t => Mapping.ToProto(t, checkpoints, pendingReasons)));
        if (page.Count == size) response.NextPageToken = page[^1].Index.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return response;
    }

    public override async Task WatchSweep(WatchSweepRequest request, IServerStreamWriter<SweepEvent> responseStream, ServerCallContext context)
    {
        var ct = context.CancellationToken;
        var sweep = await FindAsync(request.SweepId, ct).ConfigureAwait(false);
        // Subscribe before the snapshot so nothing falls between the two.
        using var subscription = events.Subscribe(sweep.Id);
        await responseStream.WriteAsync(new SweepEvent { Sweep = await ViewAsync(sweep, ct).ConfigureAwait(false) }, ct).ConfigureAwait(false);
        foreach (var t in await store.ListTrialsAsync(sweep.Id, ct).ConfigureAwait(false))
            await responseStream.WriteAsync(new SweepEvent { Trial = Mapping.ToProto(t, checkpoints, pendingReasons) }, ct).ConfigureAwait(false);
        if (sweep.State is SweepStatus.Completed or SweepStatus.Failed or SweepStatus.Cancelled) return;
        await foreach (var update in subscription.Reader.ReadAllAsync(ct).ConfigureAwait(false))
        {
            switch (update)
            {
                case SweepChanged:
                    // Counts come from the store; the event says only that the sweep changed.
                    var fresh = await store.GetSweepAsync(sweep.Id, ct).ConfigureAwait(false);
                    if (fresh is null) return;
                    var view = await ViewAsync(fresh, ct).ConfigureAwait(false);
                    await responseStream.WriteAsync(new SweepEvent { Sweep = view }, ct).ConfigureAwait(false);
                    if (fresh.State is SweepStatus.Completed or SweepStatus.Failed or SweepStatus.Cancelled) return;
                    break;
                case TrialChanged changed:
                    // Mapped here, once per watcher: building it checks the checkpoint files.
                    await responseStream.WriteAsync(new SweepEvent { Trial = Mapping.ToProto(changed.Trial, checkpoints, pendingReasons) }, ct).ConfigureAwait(false);
                    break;
                case MetricRecorded metric:
                    await responseStream.WriteAsync(new SweepEvent { Metric = Mapping.ToProto(metric.TrialId, metric.Point) }, ct).ConfigureAwait(false);
                    break;
            }
        }
    }

    public override async Task<Trial> GetBestTrial(GetBestTrialRequest request, ServerCallContext context)
    {
        var sweep = await FindAsync(request.SweepId, context.CancellationToken).ConfigureAwait(false);
        var ct = context.CancellationToken;
        TrialRecord trial;
        if (request.TrialId.Length > 0) trial = await FindTrialAsync(sweep, request.TrialId, ct).ConfigureAwait(false);
        else
        {
            if (sweep.BestTrialId is null) throw Errors.NotFound($"sweep {sweep.Id} has no result yet");
            trial = await store.GetTrialAsync(sweep.BestTrialId, ct).ConfigureAwait(false)
                    ?? throw Errors.NotFound($"trial {sweep.BestTrialId} not found");
        }
        // has_checkpoint must not say no while the checkpoint of a trial just stopped early is on its way.
        await checkpoints.WaitForExpectedAsync(trial.Id, CheckpointStore.ExpectedUploadPatience, ct).ConfigureAwait(false);
        return Mapping.ToProto(trial, checkpoints);
    }

    public override async Task DownloadCheckpoint(DownloadCheckpointRequest request, IServerStreamWriter<CheckpointChunk> responseStream, ServerCallContext context)
    {
        var sweep = await FindAsync(request.SweepId, context.CancellationToken).ConfigureAwait(false);
        var trialId = string.IsNullOrEmpty(request.TrialId) ? sweep.BestTrialId : request.TrialId;
        if (trialId is null) throw Errors.NotFound($"sweep {sweep.Id} has no result yet");
        var trial = await store.GetTrialAsync(trialId, context.CancellationToken).ConfigureAwait(false);
        if (trial is null || trial.SweepId != sweep.Id) throw Errors.NotFound($"no trial '{trialId}' in sweep {sweep.Id}");
        await checkpoints.WaitForExpectedAsync(trial.Id, CheckpointStore.ExpectedUploadPatience, context.CancellationToken).ConfigureAwait(false);
        var slot = checkpoints.Exists(sweep.Id, trial.Id, CheckpointSlot.Best) ? CheckpointSlot.Best
            : checkpoints.Exists(sweep.Id, trial.Id, CheckpointSlot.Latest) ? CheckpointSlot.Latest
            : throw Errors.NotFound($"trial {trial.Id} has no stored checkpoint");
        await using var file = checkpoints.OpenRead(sweep.Id, trial.Id, slot);
        await Orchestrator.Checkpoints.CheckpointChunks.SendAsync(file, $"{trial.Id}.ckpt", responseStream, context.CancellationToken).ConfigureAwait(false);
    }

    public override Task<ListWorkersResponse> ListWorkers(ListWorkersRequest request, ServerCallContext context)
    {
        var response = new ListWorkersResponse();
        response.Workers.AddRange(workers.All.OrderBy(w => w.ConnectedAt).Select(Mapping.ToProto));
        return Task.FromResult(response);
    }

    public override async Task<GetTrialMetricsResponse> GetTrialMetrics(GetTrialMetricsRequest request, ServerCallContext context)
    {
        var ct = context.CancellationToken;
        var sweep = await FindAsync(request.SweepId, ct).ConfigureAwait(false);
        var trial = await store.GetTrialAsync(request.TrialId, ct).ConfigureAwait(false);
        if (trial is null || trial.SweepId != sweep.Id) throw Errors.NotFound($"no trial '{request.TrialId}' in sweep {sweep.Id}");
        var response = new GetTrialMetricsResponse();
        var points = await store.GetMetricsAsync(trial.Id, ct).ConfigureAwait(false);
        response.Points.AddRange(points.OrderBy(p => p.Step).Select(p => Mapping.ToProto(trial.Id, p)));
        return response;
    }

    /// <summary>The most trials ListBestTrials returns.</summary>
    public const int MaxTopN = 5000;

    public override async Task<ListBestTrialsResponse> ListBestTrials(ListBestTrialsRequest request, ServerCallContext context)
    {
        var ct = context.CancellationToken;
        if (request.TopN < 1) throw Errors.Invalid($"top_n must be 1 or more (got {request.TopN})");
        var sweep = await FindAsync(request.SweepId, ct).ConfigureAwait(false);
        var maximize = sweeps.TrySpecOf(sweep)?.Maximize ?? true;
        var trials = await store.ListTrialsAsync(sweep.Id, ct).ConfigureAwait(false);
        var response = new ListBestTrialsResponse();
        response.Trials.AddRange(TrialRanking.Top(trials, maximize, Math.Min(request.TopN, MaxTopN)).Select(t => Mapping.ToProto(t, checkpoints)));
        return response;
    }

    public override async Task GetTrialLog(GetTrialLogRequest request, IServerStreamWriter<TrialLogChunk> responseStream, ServerCallContext context)
    {
        var ct = context.CancellationToken;
        if (request.AfterSeq < 0) throw Errors.Invalid("after_seq must not be negative");
        var sweep = await FindAsync(request.SweepId, ct).ConfigureAwait(false);
        var trial = await FindTrialAsync(sweep, request.TrialId, ct).ConfigureAwait(false);
        var first = true;
        await foreach (var page in logs.ReadAsync(trial.Id, request.AfterSeq, request.Follow, ct).ConfigureAwait(false))
        {
            var chunk = new TrialLogChunk();
            // Lines the bound dropped before the first one kept.
            if (first) chunk.Dropped = page[0].Seq - request.AfterSeq - 1;
            first = false;
            chunk.Lines.AddRange(page.Select(Mapping.ToProto));
            await responseStream.WriteAsync(chunk, ct).ConfigureAwait(false);
        }
    }

    private async Task<TrialRecord> FindTrialAsync(SweepRecord sweep, string trialId, CancellationToken ct)
    {
        if (string.IsNullOrWhiteSpace(trialId)) throw Errors.Invalid("trial_id is required");
        var trial = await store.GetTrialAsync(trialId, ct).ConfigureAwait(false);
        return trial is not null && trial.SweepId == sweep.Id ? trial : throw Errors.NotFound($"no trial '{trialId}' in sweep {sweep.Id}");
    }

    private async Task<SweepRecord> FindAsync(string id, CancellationToken ct)
    {
        if (string.IsNullOrWhiteSpace(id)) throw Errors.Invalid("sweep_id is required");
        return await store.GetSweepAsync(id, ct).ConfigureAwait(false) ?? throw Errors.NotFound($"no sweep '{id}'");
    }

    private async Task<Sweep> ViewAsync(SweepRecord sweep, CancellationToken ct) =>
        Mapping.ToProto(sweep, await store.CountTrialsAsync(sweep.Id, ct).ConfigureAwait(false), sweeps.TrySpecOf(sweep));
}

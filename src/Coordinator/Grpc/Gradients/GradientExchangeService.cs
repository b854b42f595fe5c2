using Grpc.Core;
using Microsoft.Extensions.Options;
using Orchestrator.Coordinator.Aggregation;
using Orchestrator.Protocol.V1;

namespace Orchestrator.Coordinator.Grpc.Gradients;

/// <summary>
/// The <c>coordinator</c> aggregation mode: each rank of a data-parallel trial streams its
/// gradient chunks here and gets the mean of each chunk back as soon as every rank sent it.
/// Validates the header and the fencing token, then hands the stream to its trial's
/// <see cref="AggregationSession"/>; this handler is the stream's one writer. A session's
/// <see cref="AggregationFailure"/> ends the call with its status (<see cref="GradientMapping.ToRpcException"/>).
/// </summary>
public sealed class GradientExchangeService(
    AggregationSessions sessions,
    ITrialLeaseCheck leases,
    GradientExchangeMetrics metrics,
    IOptions<GradientAggregationOptions> options) : GradientExchange.GradientExchangeBase
{
    /// <inheritdoc />
    public override async Task AllReduce(IAsyncStreamReader<GradientChunk> requestStream, IServerStreamWriter<GradientChunk> responseStream, ServerCallContext context)
    {
        try
        {
            await ExchangeAsync(requestStream, responseStream, context.CancellationToken).ConfigureAwait(false);
        }
        catch (AggregationException e)
        {
            throw GradientMapping.ToRpcException(e.Failure);
        }
    }

    private async Task ExchangeAsync(IAsyncStreamReader<GradientChunk> requestStream, IServerStreamWriter<GradientChunk> responseStream, CancellationToken ct)
    {
        GradientStreamSpec header;
        using (var first = CancellationTokenSource.CreateLinkedTokenSource(ct))
        {
            // A client that opens the stream and says nothing must not hold a handler forever.
            first.CancelAfter(options.Value.JoinTimeout);
            if (!await requestStream.MoveNext(first.Token).ConfigureAwait(false) || requestStream.Current.Header is not { } h)
            {
                AggregationFailure.ThrowInvalid("the first message on a gradient stream must carry the header");
                return;
            }
            header = GradientMapping.FromProto(h);
        }
        sessions.Validate(header);
        if (!await leases.IsCurrentAsync(header.TrialId, header.FencingToken, ct).ConfigureAwait(false))
            AggregationFailure.ThrowStale(header.TrialId, header.FencingToken);

        var (session, port) = sessions.Join(header);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct, session.Ended);
        var reader = ReadLoopAsync(session, port, requestStream, metrics, stop.Token);
        try
        {
            await WriteLoopAsync(session, port, responseStream, stop.Token).ConfigureAwait(false);
        }
        finally
        {
            await stop.CancelAsync().ConfigureAwait(false);
            await reader.ConfigureAwait(false);
            sessions.Leave(session);
        }
        if (session.Failure is { } failure) throw new AggregationException(failure);
    }

    /// <summary>Feeds the rank's chunks to the session until the rank closes its stream or anything fails.</summary>
    private static async Task ReadLoopAsync(AggregationSession session, RankPort port, IAsyncStreamReader<GradientChunk> requestStream,
        GradientExchangeMetrics metrics, CancellationToken ct)
    {
        try
        {
            while (await requestStream.MoveNext(ct).ConfigureAwait(false))
            {
                var chunk = requestStream.Current;
                if (chunk.Header is not null)
                {
                    session.Fail(AggregationFailure.Mismatch(session.TrialId, port.Rank, "sent a second header on its stream"));
                    return;
                }
                session.Receive(port.Rank, chunk.Step, chunk.Index, chunk.StepFloats, new GradientPart(chunk.Data.Memory, null));
                metrics.Received("grpc", chunk.Data.Length);
            }
            session.Depart(port, clean: true);
        }
        catch (AggregationException) when (session.Failure is not null)
        {
            // Receive threw the session's failure; every stream ends with it.
        }
        catch (Exception)
        {
            // The rank went away (reset, cancelled, broken connection): mid-step that fails the trial.
            session.Depart(port, clean: false);
        }
    }

    /// <summary>The one writer of the rank's response stream: drains its outbox in order.</summary>
    private static async Task WriteLoopAsync(AggregationSession session, RankPort port, IServerStreamWriter<GradientChunk> responseStream, CancellationToken ct)
    {
        var outbox = port.Outbox.Reader;
        try
        {
            while (await outbox.WaitToReadAsync(ct).ConfigureAwait(false))
            {
                while (outbox.TryRead(out var item))
                {
                    try
                    {
                        await responseStream.WriteAsync(GradientMapping.ToChunk(item), ct).ConfigureAwait(false);
                    }
                    finally
                    {
                        item.Buffer?.Release();
                    }
                }
            }
        }
        catch (Exception) when (session.Failure is not null)
        {
            // Failed elsewhere; the handler ends the stream with that failure.
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or InvalidOperationException)
        {
            // The rank's connection went away while we wrote to it.
            session.Depart(port, clean: false);
        }
        finally
        {
            // Chunks never written still hold a share of their pooled buffer.
            while (outbox.TryRead(out var left)) left.Buffer?.Release();
        }
    }
}

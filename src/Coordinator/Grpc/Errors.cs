using Grpc.Core;
using Grpc.Core.Interceptors;
using Orchestrator.Coordinator.State;
using Orchestrator.Specs;

namespace Orchestrator.Coordinator.Grpc;

/// <summary>Status errors, built in one place.</summary>
internal static class Errors
{
    public static RpcException Invalid(string message) => new(new Status(StatusCode.InvalidArgument, message));
    public static RpcException NotFound(string message) => new(new Status(StatusCode.NotFound, message));
}

/// <summary>
/// Maps domain exceptions to status codes for every service, so handlers stay thin and a client
/// always gets a one-line reason instead of an opaque INTERNAL.
/// </summary>
public sealed class ExceptionInterceptor : Interceptor
{
    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        try { return await continuation(request, context).ConfigureAwait(false); }
        catch (Exception e) when (Map(e) is { } status) { throw new RpcException(status); }
    }

    public override async Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, ServerCallContext context, ClientStreamingServerMethod<TRequest, TResponse> continuation)
    {
        try { return await continuation(requestStream, context).ConfigureAwait(false); }
        catch (Exception e) when (Map(e) is { } status) { throw new RpcException(status); }
    }

    public override async Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        try { await continuation(request, responseStream, context).ConfigureAwait(false); }
        catch (Exception e) when (Map(e) is { } status) { throw new RpcException(status); }
    }

    public override async Task DuplexStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        try { await continuation(requestStream, responseStream, context).ConfigureAwait(false); }
        catch (Exception e) when (Map(e) is { } status) { throw new RpcException(status); }
    }

    private static Status? Map(Exception e) => e switch
    {
        RpcException => null,
        SpecException s => new Status(StatusCode.InvalidArgument, s.Message),
        Sweeps.SweepOperationException o => new Status(StatusCode.FailedPrecondition, o.Message),
        StateStoreUnavailableException u => new Status(StatusCode.Unavailable, "state store unavailable: " + u.Message),
        OperationCanceledException => new Status(StatusCode.Cancelled, "cancelled"),
        _ => null,
    };
}

using System.Diagnostics.CodeAnalysis;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.Extensions.Options;
using Orchestrator.Coordinator.Configuration;
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

/// <summary>When a token is configured, refuses calls that do not present it (UNAUTHENTICATED).</summary>
public sealed class AuthInterceptor(IOptions<CoordinatorOptions> options) : Interceptor
{
    // The standard health service answers without a token, like /healthz and /readyz: a Kubernetes
    // gRPC probe cannot send one, and it says nothing beyond serving or not.
    private const string HealthServicePrefix = "/grpc.health.v1.Health/";

    private void Check(ServerCallContext context)
    {
        if (context.Method.StartsWith(HealthServicePrefix, StringComparison.Ordinal)) return;
        if (!Accepts(options.Value.AuthToken, context.RequestHeaders.GetValue("authorization"))) Fail();
    }

    /// <summary>True when no token is configured, or <paramref name="authorization"/> is "Bearer &lt;token&gt;" (compared in constant time).</summary>
    internal static bool Accepts(string? token, string? authorization) =>
        string.IsNullOrEmpty(token)
        || (authorization is not null && System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(
            System.Text.Encoding.UTF8.GetBytes(authorization), System.Text.Encoding.UTF8.GetBytes("Bearer " + token)));

    [DoesNotReturn]
    private static void Fail() => throw new RpcException(new Status(StatusCode.Unauthenticated, "missing or wrong token (set ORCH_TOKEN)"));

    public override Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        Check(context);
        return continuation(request, context);
    }

    public override Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, ServerCallContext context, ClientStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Check(context);
        return continuation(requestStream, context);
    }

    public override Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Check(context);
        return continuation(request, responseStream, context);
    }

    public override Task DuplexStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Check(context);
        return continuation(requestStream, responseStream, context);
    }
}

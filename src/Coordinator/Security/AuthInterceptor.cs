using System.Diagnostics.CodeAnalysis;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Orchestrator.Coordinator.Metrics;

namespace Orchestrator.Coordinator.Security;

/// <summary>
/// Checks every call against <see cref="AccessRules"/>: a call without a known token is refused
/// with UNAUTHENTICATED, one whose token lacks the method's role with PERMISSION_DENIED. Each
/// refusal is logged (method, peer, roles; never the token) and counted
/// (<c>orch_auth_refusals</c>). With a client CA configured (mutual TLS), a worker call must also
/// come with a client certificate (Kestrel has checked it against that CA).
/// </summary>
public sealed partial class AuthInterceptor(
    Credentials credentials,
    CoordinatorMetrics metrics,
    Microsoft.Extensions.Options.IOptions<Hosting.ListenSettings> listen,
    ILogger<AuthInterceptor> logger) : Interceptor
{
    private void Check(ServerCallContext context)
    {
        var required = AccessRules.Required(context.Method);
        if (required == Roles.None) return;
        // Mutual TLS for workers: Kestrel checked a presented certificate against the client CA; a worker call must present one.
        if (required.HasFlag(Roles.Worker) && !string.IsNullOrEmpty(listen.Value.TlsClientCa)
            && context.GetHttpContext().Connection.ClientCertificate is null)
            Refuse(context, required, null, StatusCode.Unauthenticated,
                "a worker must present a client certificate signed by the coordinator's client CA (ORCH_TLS_CLIENT_CERT and ORCH_TLS_CLIENT_KEY on the worker)");
        var granted = credentials.RolesOf(context.RequestHeaders.GetValue("authorization"));
        if (granted is null)
            Refuse(context, required, null, StatusCode.Unauthenticated, "missing or unknown token (set ORCH_TOKEN to a token the coordinator accepts)");
        if (!AccessRules.Allows(granted.Value, required))
            Refuse(context, required, granted, StatusCode.PermissionDenied,
                $"a {RoleNames.Of(granted.Value)} token may not call {Short(context.Method)}: it needs the {RoleNames.Of(required)} role");
    }

    [DoesNotReturn]
    private void Refuse(ServerCallContext context, Roles required, Roles? granted, StatusCode code, string message)
    {
        var reason = code == StatusCode.Unauthenticated ? "unauthenticated" : "permission_denied";
        metrics.AuthRefused(reason, RoleNames.Of(required));
        Log.Refused(logger, context.Method, context.Peer, reason, granted is { } g ? RoleNames.Of(g) : "none", RoleNames.Of(required));
        throw new RpcException(new Status(code, message));
    }

    /// <summary>"Sweeps/SubmitSweep" for "/orchestrator.v1.Sweeps/SubmitSweep".</summary>
    private static string Short(string method)
    {
        var parts = method.Split('/', StringSplitOptions.RemoveEmptyEntries);
        return parts.Length == 2 ? $"{parts[0][(parts[0].LastIndexOf('.') + 1)..]}/{parts[1]}" : method;
    }

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

    private static partial class Log
    {
        [LoggerMessage(LogEventIds.Security + 1, LogLevel.Warning, "Refused {Method} from {Peer}: {Reason} (token roles: {Granted}; needed: {Required})")]
        public static partial void Refused(ILogger logger, string method, string peer, string reason, string granted, string required);
    }
}

using Orchestrator.Coordinator.Configuration;
using Orchestrator.Coordinator.Security;
using Proto = Orchestrator.Protocol.V1;

namespace Orchestrator.Coordinator.UnitTests.Security;

/// <summary>Which role each gRPC method needs, and which roles each token grants.</summary>
public sealed class AccessRulesTests
{
    private static IEnumerable<string> Methods(Google.Protobuf.Reflection.ServiceDescriptor service) =>
        service.Methods.Select(m => $"/{service.FullName}/{m.Name}");

    [Fact]
    public void Every_method_of_the_api_has_a_role_readers_read_users_change_sweeps_and_workers_run_trials()
    {
        var changes = new[] { "SubmitSweep", "CancelSweep", "PauseSweep", "ResumeSweep", "ExtendSweep", "StopTrial" };
        foreach (var method in Methods(Proto.Sweeps.Descriptor))
        {
            var expected = changes.Any(c => method.EndsWith("/" + c, StringComparison.Ordinal)) ? Roles.User : Roles.Viewer;
            Assert.True(expected == AccessRules.Required(method), method);
        }
        foreach (var service in new[] { Proto.WorkerGateway.Descriptor, Proto.DataSets.Descriptor, Proto.GradientExchange.Descriptor })
            Assert.All(Methods(service), m => Assert.Equal(Roles.Worker, AccessRules.Required(m)));
        Assert.Equal(Roles.None, AccessRules.Required("/grpc.health.v1.Health/Check"));
        Assert.Equal(Roles.Worker, AccessRules.Required("/orchestrator.v1.Plugins/DownloadPluginFile"));
        Assert.Equal(Methods(Proto.Plugins.Descriptor).Order(StringComparer.Ordinal), ["/orchestrator.v1.Plugins/DownloadPluginFile", "/orchestrator.v1.Plugins/UploadPluginFile"]);
        // Nothing is open by omission: an unknown service or a malformed name needs every role.
        Assert.Equal(Roles.All, AccessRules.Required("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"));
        Assert.Equal(Roles.All, AccessRules.Required("nonsense"));
    }

    [Fact]
    public void Only_a_user_may_upload_plugin_code_which_workers_then_run()
    {
        var upload = AccessRules.Required("/orchestrator.v1.Plugins/UploadPluginFile");
        Assert.Equal(Roles.User, upload);
        Assert.True(AccessRules.Allows(Roles.User | Roles.Viewer, upload));
        Assert.False(AccessRules.Allows(Roles.Worker, upload));
        Assert.False(AccessRules.Allows(Roles.Viewer, upload));
    }

    [Fact]
    public void A_user_token_reads_and_changes_a_viewer_token_only_reads_and_neither_is_a_worker()
    {
        var credentials = new Credentials(Microsoft.Extensions.Options.Options.Create(new CoordinatorOptions
        {
            AuthToken = "admin", WorkerToken = "w", UserToken = "u", ViewerToken = "v",
        }));
        Assert.False(credentials.Open);
        Assert.Equal(Roles.All, credentials.RolesOf("Bearer admin"));
        Assert.Equal(Roles.Worker, credentials.RolesOf("Bearer w"));
        Assert.Equal(Roles.User | Roles.Viewer, credentials.RolesOf("Bearer u"));
        Assert.Equal(Roles.Viewer, credentials.RolesOf("Bearer v"));
        Assert.Null(credentials.RolesOf("Bearer x"));
        Assert.Null(credentials.RolesOf("u"));
        Assert.Null(credentials.RolesOf(null));

        Assert.True(AccessRules.Allows(Roles.User | Roles.Viewer, Roles.Viewer));
        Assert.False(AccessRules.Allows(Roles.User | Roles.Viewer, Roles.Worker));
        Assert.False(AccessRules.Allows(Roles.Viewer, Roles.User));
        Assert.False(AccessRules.Allows(Roles.Worker, Roles.Viewer));
        Assert.True(AccessRules.Allows(Roles.All, Roles.All));
        Assert.Equal(["admin", "user", "viewer", "worker"], new[] { Roles.All, Roles.User | Roles.Viewer, Roles.Viewer, Roles.Worker }.Select(RoleNames.Of));
    }

    [Fact]
    public void Without_any_token_the_coordinator_is_open_and_one_role_token_alone_closes_it()
    {
        var open = new Credentials(Microsoft.Extensions.Options.Options.Create(new CoordinatorOptions()));
        Assert.True(open.Open);
        Assert.Equal(Roles.All, open.RolesOf(null));

        var viewerOnly = new Credentials(Microsoft.Extensions.Options.Options.Create(new CoordinatorOptions { ViewerToken = "v" }));
        Assert.False(viewerOnly.Open);
        Assert.Null(viewerOnly.RolesOf(null));
        Assert.Equal(Roles.Viewer, viewerOnly.RolesOf("Bearer v"));
    }
}

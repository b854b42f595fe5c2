using Orchestrator.Configuration;
using Orchestrator.Coordinator.Hosting;

// The coordinator as its own program (a container's entry point). Configuration comes from the
// environment variables of EnvironmentVariables.ReadByCoordinator (src/Shared/Configuration).
static string? env(string name) => Environment.GetEnvironmentVariable(name);
var app = CoordinatorHost.Build(new CoordinatorHostSettings
{
    Host = env(EnvironmentVariables.Bind) ?? "0.0.0.0",
    GrpcPort = int.TryParse(env(EnvironmentVariables.GrpcPort), out var g) ? g : 5000,
    HttpPort = int.TryParse(env(EnvironmentVariables.HttpPort), out var h) ? h : 5001,
    GradientPort = env(EnvironmentVariables.GradientPort) == "off" ? null : int.TryParse(env(EnvironmentVariables.GradientPort), out var d) ? d : 5002,
    Redis = env(EnvironmentVariables.Redis),
    StateDir = env(EnvironmentVariables.StateDir) ?? "/var/lib/orchestrator",
    CheckpointDir = env(EnvironmentVariables.CheckpointDir),
    DataDir = env(EnvironmentVariables.DataDir),
}, args);
await app.RunAsync();

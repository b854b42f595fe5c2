using Orchestrator.Coordinator.Hosting;

// The coordinator as its own program (a container's entry point). Configuration comes from
// environment variables: ORCH_REDIS (host:port), ORCH_STATE_DIR, ORCH_CHECKPOINT_DIR,
// ORCH_GRPC_PORT (5000), ORCH_HTTP_PORT (5001), ORCH_GRADIENT_PORT (5002; "off": coordinator-mode
// gradients ride the gRPC port), ORCH_BIND (0.0.0.0), ORCH_TOKEN.
static string? env(string name) => Environment.GetEnvironmentVariable(name);
var app = CoordinatorHost.Build(new CoordinatorHostSettings
{
    Host = env("ORCH_BIND") ?? "0.0.0.0",
    GrpcPort = int.TryParse(env("ORCH_GRPC_PORT"), out var g) ? g : 5000,
    HttpPort = int.TryParse(env("ORCH_HTTP_PORT"), out var h) ? h : 5001,
    GradientPort = env("ORCH_GRADIENT_PORT") == "off" ? null : int.TryParse(env("ORCH_GRADIENT_PORT"), out var d) ? d : 5002,
    Redis = env("ORCH_REDIS"),
    StateDir = env("ORCH_STATE_DIR") ?? "/var/lib/orchestrator",
    CheckpointDir = env("ORCH_CHECKPOINT_DIR"),
    DataDir = env("ORCH_DATA_DIR"),
}, args);
await app.RunAsync();

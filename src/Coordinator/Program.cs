using Orchestrator.Coordinator.Hosting;

// The coordinator as its own program (a container's entry point). Its settings come from
// appsettings.json, the ORCH_* variables of Settings.Coordinator (src/Shared/Configuration) and
// --Section:Key flags, over container defaults (docs/operations.md).
return await CoordinatorHost.RunProgramAsync(args);

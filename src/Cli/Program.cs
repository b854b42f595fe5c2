return await Orchestrator.Cli.OrchApp.RunAsync(args);

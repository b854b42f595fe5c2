using Orchestrator.Fuzz;

// orch-fuzz TARGET: one AFL++ run (fuzz/run.sh). orch-fuzz TARGET FILE...: replay inputs, say which fail.
// orch-fuzz seed DIR: write the binary seeds (a checkpoint, a gradient-socket hello) under DIR.
if (args is ["seed", var corpus])
{
    FuzzTargets.WriteSeeds(corpus);
    return 0;
}
if (args.Length == 0 || !FuzzTargets.Names.Contains(args[0]))
{
    Console.Error.WriteLine($"usage: orch-fuzz TARGET [FILE...]   (TARGET: {string.Join(", ", FuzzTargets.Names)})");
    return 2;
}
var target = args[0];
if (args.Length > 1)
{
    var failed = 0;
    foreach (var file in args.Skip(1))
    {
        try
        {
            FuzzTargets.Run(target, File.ReadAllBytes(file));
        }
        catch (Exception e)
        {
            failed++;
            Console.Error.WriteLine(Environment.GetEnvironmentVariable("ORCH_FUZZ_TRACE") is null ? $"{file}: {e.GetType().Name}: {e.Message}" : $"{file}: {e}");
        }
    }
    return failed == 0 ? 0 : 1;
}
SharpFuzz.Fuzzer.OutOfProcess.Run(stream =>
{
    using var memory = new MemoryStream();
    stream.CopyTo(memory);
    FuzzTargets.Run(target, memory.ToArray());
});
return 0;

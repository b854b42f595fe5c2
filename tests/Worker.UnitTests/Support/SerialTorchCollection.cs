namespace Orchestrator.Worker.UnitTests.Support;

/// <summary>
/// libtorch's default generator is process-wide: dropout and weight init in a test running in
/// parallel would consume random numbers of another. Tests that compare runs bit for bit join this
/// collection, which xUnit runs alone.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class SerialTorchCollection
{
    public const string Name = "serial torch (process-wide RNG)";
}

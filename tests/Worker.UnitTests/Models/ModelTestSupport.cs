using Orchestrator.Data;
using Orchestrator.Trials;
using Orchestrator.Worker.Models;
using Orchestrator.Worker.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace Orchestrator.Worker.UnitTests.Models;

/// <summary>Small helpers shared by the model tests.</summary>
internal static class ModelTestSupport
{
    public static ImageClassifier Create(string name, ImageShape input, int classes, string? stem = null,
        double dropout = 0, bool batchNorm = true, int seed = 1)
    {
        TorchRuntime.Initialize();
        torch.manual_seed(seed);
        return ModelRegistry.Create(new ModelSpec { Name = name, Stem = stem, Dropout = dropout, BatchNorm = batchNorm }, input, classes);
    }

    public static long ParameterCount(nn.Module model) => model.parameters().Sum(p => p.numel());

    /// <summary>Detached copies of every state-dict entry (the caller's dispose scope owns them).</summary>
    public static Dictionary<string, Tensor> Snapshot(nn.Module model) =>
        model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());

    public static bool Equal(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().ToBoolean();

    /// <summary>A temporary folder removed at the end of the test.</summary>
    public sealed class TempDir : IDisposable
    {
        public TempDir() => Directory.CreateDirectory(Path);

        public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "orch-models-" + Guid.NewGuid().ToString("N"));

        public string File(string name) => System.IO.Path.Combine(Path, name);

        public void Dispose()
        {
            try
            {
                Directory.Delete(Path, recursive: true);
            }
            catch (IOException)
            {
                // Best effort: a leftover temp folder must not fail the test.
            }
        }
    }
}

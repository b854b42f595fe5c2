using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Orchestrator.Sdk;

namespace Orchestrator.Worker.UnitTests.Plugins;

/// <summary>Compiles small plug-ins (good and broken ones) to .dll files with Roslyn, as a user's build would.</summary>
internal static class PluginCompiler
{
    private static readonly Lazy<List<MetadataReference>> Framework = new(() =>
        [.. ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator)
            .Where(p => Path.GetFileName(p) is var n && (n.StartsWith("System.", StringComparison.Ordinal) || n is "netstandard.dll" or "mscorlib.dll"))
            .Select(p => MetadataReference.CreateFromFile(p))]);

    /// <summary>The worker's SDK and TorchSharp, which a real plug-in compiles against.</summary>
    public static MetadataReference[] Sdk =>
    [
        MetadataReference.CreateFromFile(typeof(IModelFactory).Assembly.Location),
        MetadataReference.CreateFromFile(typeof(TorchSharp.torch).Assembly.Location),
    ];

    /// <summary>Compiles <paramref name="source"/> into <paramref name="folder"/>/<paramref name="name"/>.dll and returns its path.</summary>
    public static string Compile(string folder, string name, string source, IEnumerable<MetadataReference>? references = null)
    {
        Directory.CreateDirectory(folder);
        var compilation = CSharpCompilation.Create(name,
            [CSharpSyntaxTree.ParseText(source)],
            [.. Framework.Value, .. references ?? Sdk],
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Disable));
        var path = Path.Combine(folder, name + ".dll");
        using (var file = File.Create(path))
        {
            var result = compilation.Emit(file);
            Assert.True(result.Success, string.Join("\n", result.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error)));
        }
        return path;
    }

    /// <summary>A stand-in Orchestrator.Sdk of another major version, for the version check.</summary>
    public static MetadataReference OtherSdkMajor(string folder, int major) =>
        MetadataReference.CreateFromFile(Compile(Path.Combine(folder, $"sdk{major}"), SdkVersion.AssemblyName, $$"""
            [assembly: System.Reflection.AssemblyVersion("{{major}}.0.0.0")]
            namespace Orchestrator.Sdk
            {
                public sealed class PluginExportAttribute : System.Attribute { public PluginExportAttribute(string name) { } }
            }
            """, []));

    /// <summary>A plug-in with a small model ("good-net"), a data set ("blocks") and the broken exports the tests need.</summary>
    public const string Source = """
        using System;
        using System.Collections.Generic;
        using System.Threading;
        using System.Threading.Tasks;
        using Orchestrator.Data;
        using Orchestrator.Sdk;
        using TorchSharp;
        using static TorchSharp.torch;

        namespace Test.Plugin
        {
            [PluginExport("good-net")]
            public sealed class GoodNetFactory : IModelFactory
            {
                public nn.Module<Tensor, Tensor> Create(ModelRequest r) =>
                    new GoodNet(r.Input.Size, r.Args.GetInt("hidden", 8), r.NumClasses);
            }

            public sealed class GoodNet : nn.Module<Tensor, Tensor>
            {
                private readonly TorchSharp.Modules.Linear fc1;
                private readonly TorchSharp.Modules.Linear fc2;
                public GoodNet(int inputs, int hidden, int classes) : base("good-net")
                {
                    fc1 = nn.Linear(inputs, hidden);
                    fc2 = nn.Linear(hidden, classes);
                    RegisterComponents();
                }
                public override Tensor forward(Tensor x) => fc2.forward(nn.functional.relu(fc1.forward(x.flatten(1))));
            }

            [PluginExport("throws-forward")]
            public sealed class ThrowsForwardFactory : IModelFactory
            {
                public nn.Module<Tensor, Tensor> Create(ModelRequest r) => new ThrowsForward();
            }

            public sealed class ThrowsForward : nn.Module<Tensor, Tensor>
            {
                public ThrowsForward() : base("throws-forward") { RegisterComponents(); }
                public override Tensor forward(Tensor x) => throw new InvalidOperationException("shape mismatch in layer 3");
            }

            [PluginExport("ctor-throws")]
            public sealed class CtorThrows : IModelFactory
            {
                public CtorThrows() => throw new InvalidOperationException("no licence key found");
                public nn.Module<Tensor, Tensor> Create(ModelRequest r) => null;
            }

            [PluginExport("hangs")]
            public sealed class Hangs : IModelFactory
            {
                public nn.Module<Tensor, Tensor> Create(ModelRequest r) { Thread.Sleep(20_000); return null; }
            }

            [PluginExport("error-rate")]
            public sealed class ErrorRate : IEvaluationMetric
            {
                public double Compute(EvaluationResult r)
                {
                    long right = 0;
                    for (var i = 0; i < r.Confusion.Length; i++) right += r.Confusion[i][i];
                    return 1 - (double)right / r.Count;
                }
            }

            [PluginExport("broken-metric")]
            public sealed class BrokenMetric : IEvaluationMetric
            {
                public double Compute(EvaluationResult r) => throw new DivideByZeroException("no positives");
            }

            [PluginExport("not-a-factory")]
            public sealed class NotAFactory { }

            [PluginExport("blocks")]
            public sealed class Blocks : IDatasetProvider
            {
                public Task<DatasetSource> OpenAsync(DatasetRequest r, CancellationToken ct) =>
                    Task.FromResult(new DatasetSource(new BlockImages(40, r.Args.GetBool("broken", false)), null));
            }

            public sealed class BlockImages(int count, bool broken) : IImageDataset
            {
                public string Name => "blocks";
                public int Count => count;
                public ImageShape Shape => new ImageShape(1, 4, 4);
                public IReadOnlyList<string> Classes => new[] { "dark", "light" };
                public int GetLabel(int i) => i % 2;
                public void CopyImage(int i, Span<byte> d)
                {
                    if (broken) throw new System.IO.InvalidDataException($"image {i}: bad row");
                    d.Slice(0, 16).Fill((byte)(i % 2 == 0 ? 10 : 240));
                }
            }
        }
        """;
}

using System.Collections.Concurrent;
using k8s;
using k8s.Models;
using YamlDotNet.RepresentationModel;

namespace Orchestrator.Deployment.UnitTests.Rendering;

/// <summary>One object of a render: its YAML, and the KubernetesClient model for built-in kinds.</summary>
public sealed record RenderedObject(string ApiVersion, string Kind, string Name, YamlMappingNode Yaml, object? Typed)
{
    public string? Component => Yaml.Child("metadata")?.Child("labels")?.Scalar("app.kubernetes.io/component");
}

/// <summary>
/// The objects a deployment consists of, as rendered by the real tools: the chart with one of its
/// value sets (helm/orchestrator/ci/*-values.yaml), or the manifests (kubectl kustomize k8s/ plus
/// the two optional files that need CRDs).
/// </summary>
public sealed class Render
{
    /// <summary>Release name: the chart then names its objects exactly as k8s/ does.</summary>
    public const string Release = "orchestrator";
    public const string Manifests = "k8s";
    private const string ChartPath = "helm/orchestrator";
    private static readonly string[] CustomGroups = ["monitoring.coreos.com/", "keda.sh/"];
    private static readonly ConcurrentDictionary<string, Lazy<Render>> Cache = new();

    public string Name { get; }
    /// <summary>The YAML files this render wrote (for the schema validator).</summary>
    public IReadOnlyList<string> Files { get; }
    public IReadOnlyList<RenderedObject> Objects { get; }

    private Render(string name, IReadOnlyList<string> files, IReadOnlyList<RenderedObject> objects) => (Name, Files, Objects) = (name, files, objects);

    /// <summary>"k8s", then "helm:&lt;set&gt;" for each value set.</summary>
    public static IEnumerable<string> Names => new[] { Manifests }.Concat(ValueSets.Select(s => "helm:" + s));

    public static TheoryData<string> All => new(Names);

    public static IReadOnlyList<string> ValueSets =>
        System.IO.Directory.GetFiles(Path.Combine(K8sTools.RepositoryRoot, ChartPath, "ci"), "*-values.yaml")
            .Select(f => Path.GetFileName(f)[..^"-values.yaml".Length]).Order(StringComparer.Ordinal).ToList();

    /// <summary>Each render runs once per test run (test classes run in parallel, so Lazy keeps it single).</summary>
    public static Render Get(string name) =>
        Cache.GetOrAdd(name, n => new Lazy<Render>(() => n == Manifests ? RenderManifests() : RenderChart(n["helm:".Length..]))).Value;

    /// <summary>helm template with extra arguments (e.g. --set), for the tests of refused values.</summary>
    public static ProcessResult Template(params string[] args) =>
        K8sTools.Run(K8sTools.Helm, ["template", Release, ChartPath, "--namespace", "orch", .. args]);

    public static ProcessResult Lint(params string[] args) => K8sTools.Run(K8sTools.Helm, ["lint", "--strict", ChartPath, .. args]);

    public IEnumerable<T> Of<T>() => Objects.Select(o => o.Typed).OfType<T>();
    public IEnumerable<RenderedObject> OfKind(string kind) => Objects.Where(o => o.Kind == kind);
    public V1Deployment Deployment(string component) => Of<V1Deployment>().Single(d => d.Metadata.Labels["app.kubernetes.io/component"] == component);
    public V1Container Container(string component) => Deployment(component).Spec.Template.Spec.Containers.Single();

    private static Render RenderChart(string valueSet)
    {
        var text = Template("-f", Path.Combine(ChartPath, "ci", valueSet + "-values.yaml")).ShouldSucceed("helm template " + valueSet).Stdout;
        return Parse("helm:" + valueSet, [("helm-" + valueSet, text)]);
    }

    private static Render RenderManifests()
    {
        var text = K8sTools.Run(K8sTools.Kubectl, "kustomize", Manifests).ShouldSucceed("kubectl kustomize k8s").Stdout;
        // Not in kustomization.yaml (they need CRDs) but part of the same deployment.
        var optional = new[] { "monitoring.yaml", "keda-scaledobject.yaml" }
            .Select(f => ("k8s-" + f[..^5], File.ReadAllText(Path.Combine(K8sTools.RepositoryRoot, Manifests, f))));
        return Parse(Manifests, [("k8s-kustomize", text), .. optional]);
    }

    private static Render Parse(string name, IReadOnlyList<(string File, string Text)> parts)
    {
        var dir = Path.Combine(Path.GetTempPath(), "orch-k8s-renders", Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture));
        System.IO.Directory.CreateDirectory(dir);
        var files = new List<string>();
        var objects = new List<RenderedObject>();
        foreach (var (file, text) in parts)
        {
            var path = Path.Combine(dir, file + ".yaml");
            File.WriteAllText(path, text);
            files.Add(path);
            var stream = new YamlStream();
            stream.Load(new StringReader(text));
            foreach (var doc in stream.Documents)
            {
                if (doc.RootNode is not YamlMappingNode { Children.Count: > 0 } root) continue;
                var apiVersion = root.Scalar("apiVersion") ?? throw new InvalidDataException($"{name}: an object without apiVersion");
                var kind = root.Scalar("kind") ?? throw new InvalidDataException($"{name}: an object without kind");
                var objectName = root.Child("metadata")?.Scalar("name") ?? "";
                object? typed = null;
                if (!CustomGroups.Any(g => apiVersion.StartsWith(g, StringComparison.Ordinal)))
                {
                    // Strict: a field the Kubernetes API does not define fails here (the schemas allow it).
                    var writer = new StringWriter();
                    new YamlStream(doc).Save(writer, assignAnchors: false);
                    typed = KubernetesYaml.LoadAllFromString(writer.ToString(), strict: true).Single();
                }
                objects.Add(new RenderedObject(apiVersion, kind, objectName, root, typed));
            }
        }
        return new Render(name, files, objects);
    }
}

/// <summary>Small lookups over YamlDotNet's representation model.</summary>
public static class YamlNodes
{
    public static YamlNode? Get(this YamlMappingNode node, string key) => node.Children.TryGetValue(new YamlScalarNode(key), out var v) ? v : null;
    public static YamlMappingNode? Child(this YamlMappingNode node, string key) => node.Get(key) as YamlMappingNode;
    public static string? Scalar(this YamlMappingNode node, string key) => (node.Get(key) as YamlScalarNode)?.Value;
    public static IEnumerable<YamlMappingNode> Items(this YamlMappingNode node, string key) =>
        (node.Get(key) as YamlSequenceNode)?.Children.OfType<YamlMappingNode>() ?? [];
    public static Dictionary<string, string> Strings(this YamlMappingNode? node) =>
        node?.Children.ToDictionary(kv => ((YamlScalarNode)kv.Key).Value!, kv => ((YamlScalarNode)kv.Value).Value!) ?? [];
}

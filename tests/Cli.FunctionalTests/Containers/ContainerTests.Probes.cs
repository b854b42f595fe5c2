using Orchestrator.TestSupport;
using YamlDotNet.RepresentationModel;

namespace Orchestrator.Cli.FunctionalTests.Containers;

/// <summary>The probes of the k8s/ manifests, asked of the running containers: every HTTP probe hits an endpoint that exists and answers 200 on a healthy pod.</summary>
public sealed partial class ContainerTests
{
    /// <summary>Manifest container name → the role of a running container of that image.</summary>
    private static readonly Dictionary<string, string> ProbedContainers = new() { ["coordinator"] = "coordinator", ["worker"] = "w1" };

    private async Task AssertManifestProbesAnswerAsync()
    {
        var probes = ManifestHttpProbes().ToList();
        Assert.True(probes.Count(p => p.Container == "coordinator") >= 2 && probes.Count(p => p.Container == "worker") >= 2,
            "expected liveness and readiness probes on the coordinator and the workers in k8s/, found: " +
            string.Join(", ", probes.Select(p => $"{p.Container} {p.Kind} {p.Path}:{p.Port}")));
        foreach (var p in probes)
        {
            var url = $"http://127.0.0.1:{_stack.HostPort(ProbedContainers[p.Container], p.Port)}{p.Path}";
            Assert.True(await StatusAsync(url) == 200, $"the {p.Kind} of container '{p.Container}' in k8s/ (GET {p.Path} on port {p.Port}) does not answer 200 on the running image: {url}");
        }
    }

    private sealed record HttpProbe(string Container, string Kind, string Path, int Port);

    private static IEnumerable<HttpProbe> ManifestHttpProbes()
    {
        foreach (var file in Directory.GetFiles(Path.Combine(RepositoryRoot.Path, "k8s"), "*.yaml"))
        {
            var yaml = new YamlStream();
            using (var reader = File.OpenText(file)) yaml.Load(reader);
            foreach (var doc in yaml.Documents)
            {
                if (doc.RootNode is not YamlMappingNode root || Scalar(root, "kind") is not ("Deployment" or "StatefulSet")) continue;
                if (Node(Child(Child(Child(root, "spec"), "template"), "spec"), "containers") is not YamlSequenceNode containers) continue;
                foreach (var c in containers.Children.OfType<YamlMappingNode>())
                {
                    var name = Scalar(c, "name");
                    if (name is null || !ProbedContainers.ContainsKey(name)) continue;
                    var ports = (Node(c, "ports") as YamlSequenceNode)?.Children.OfType<YamlMappingNode>()
                        .ToDictionary(p => Scalar(p, "name") ?? "", p => int.Parse(Scalar(p, "containerPort")!, System.Globalization.CultureInfo.InvariantCulture)) ?? [];
                    foreach (var kind in new[] { "livenessProbe", "readinessProbe", "startupProbe" })
                    {
                        if (Child(Child(c, kind), "httpGet") is not { } get) continue;
                        var port = Scalar(get, "port")!;
                        yield return new HttpProbe(name, kind, Scalar(get, "path") ?? "/",
                            int.TryParse(port, out var number) ? number : ports.TryGetValue(port, out var named) ? named
                                : throw new InvalidDataException($"{file}: {kind} of '{name}' names port '{port}', which the container does not declare"));
                    }
                }
            }
        }
    }

    private static YamlNode? Node(YamlMappingNode? node, string key) =>
        node is not null && node.Children.TryGetValue(new YamlScalarNode(key), out var v) ? v : null;

    private static YamlMappingNode? Child(YamlMappingNode? node, string key) => Node(node, key) as YamlMappingNode;

    private static string? Scalar(YamlMappingNode node, string key) =>
        node.Children.TryGetValue(new YamlScalarNode(key), out var v) ? (v as YamlScalarNode)?.Value : null;
}

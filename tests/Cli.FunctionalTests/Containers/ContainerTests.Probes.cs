using Orchestrator.TestSupport;
using YamlDotNet.RepresentationModel;

namespace Orchestrator.Cli.FunctionalTests.Containers;

/// <summary>
/// The probes of the k8s/ manifests, asked of the running containers: every HTTP probe hits an
/// endpoint that exists and answers 200 on a healthy pod, every gRPC probe a health service that says SERVING.
/// </summary>
public sealed partial class ContainerTests
{
    /// <summary>Manifest container name → the role of a running container of that image.</summary>
    private static readonly Dictionary<string, string> ProbedContainers = new() { ["coordinator"] = "coordinator", ["worker"] = "w1" };

    private async Task AssertManifestProbesAnswerAsync()
    {
        var probes = ManifestProbes().ToList();
        Assert.True(probes.Count(p => p.Container == "coordinator") >= 2 && probes.Count(p => p.Container == "worker") >= 2,
            "expected liveness and readiness probes on the coordinator and the workers in k8s/, found: " +
            string.Join(", ", probes.Select(p => $"{p.Container} {p.Kind} {p.Path}:{p.Port}")));
        foreach (var p in probes)
        {
            var address = $"http://127.0.0.1:{_stack.HostPort(ProbedContainers[p.Container], p.Port)}";
            if (p.GrpcService is { } service)
            {
                using var channel = Grpc.Net.Client.GrpcChannel.ForAddress(address);
                var answer = await new Grpc.Health.V1.Health.HealthClient(channel)
                    .CheckAsync(new Grpc.Health.V1.HealthCheckRequest { Service = service }, deadline: DateTime.UtcNow.AddSeconds(10));
                Assert.True(answer.Status == Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus.Serving,
                    $"the {p.Kind} of container '{p.Container}' in k8s/ (grpc.health.v1 service \"{service}\" on port {p.Port}) says {answer.Status} on the running image");
                continue;
            }
            var url = address + p.Path;
            Assert.True(await StatusAsync(url) == 200, $"the {p.Kind} of container '{p.Container}' in k8s/ (GET {p.Path} on port {p.Port}) does not answer 200 on the running image: {url}");
        }
    }

    /// <summary>An HTTP probe (<paramref name="Path"/>) or a gRPC one (<paramref name="GrpcService"/> set).</summary>
    private sealed record Probe(string Container, string Kind, string Path, int Port, string? GrpcService = null);

    private static IEnumerable<Probe> ManifestProbes()
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
                        if (Child(Child(c, kind), "grpc") is { } grpc)
                        {
                            yield return new Probe(name, kind, "", int.Parse(Scalar(grpc, "port")!, System.Globalization.CultureInfo.InvariantCulture), Scalar(grpc, "service") ?? "");
                            continue;
                        }
                        if (Child(Child(c, kind), "httpGet") is not { } get) continue;
                        var port = Scalar(get, "port")!;
                        yield return new Probe(name, kind, Scalar(get, "path") ?? "/",
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

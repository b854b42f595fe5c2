using System.Text.Json;
using k8s;
using k8s.Models;
using Orchestrator.Coordinator.Hosting;
using YamlDotNet.RepresentationModel;

namespace Orchestrator.Deployment.UnitTests;

/// <summary>
/// The plain Kubernetes manifests under k8s/, file by file: built-in objects parsed with the
/// KubernetesClient models, custom resources (ServiceMonitor, PodMonitor, ScaledObject) as generic
/// YAML. The rendered, schema-validated and cross-checked forms are in the other test classes.
/// </summary>
public sealed class ManifestTests
{
    private const string AppName = "orchestrator";
    private static readonly string[] Components = ["coordinator", "worker", "redis"];
    private static readonly string[] CustomKinds = ["ServiceMonitor", "PodMonitor", "ScaledObject"];

    private static readonly Lazy<Manifests> All = new(Manifests.Load);

    [Fact]
    public void Every_manifest_file_parses_and_holds_the_expected_objects()
    {
        var m = All.Value;
        Assert.Equal(
            ["ConfigMap", "Deployment", "Deployment", "PersistentVolumeClaim", "PodDisruptionBudget", "PodMonitor", "ScaledObject", "Service", "Service", "ServiceMonitor", "StatefulSet"],
            m.Typed.Select(o => ((IKubernetesObject)o).Kind).Concat(m.Custom.Select(c => Str(c, "kind"))).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void Every_object_has_the_app_labels_and_no_namespace()
    {
        var m = All.Value;
        foreach (var o in m.Typed.Cast<IMetadata<V1ObjectMeta>>())
        {
            Assert.Equal(AppName, o.Metadata.Labels["app.kubernetes.io/name"]);
            Assert.Contains(o.Metadata.Labels["app.kubernetes.io/component"], Components);
            Assert.Null(o.Metadata.NamespaceProperty);
        }
        foreach (var c in m.Custom)
        {
            var labels = Map(Map(c, "metadata"), "labels");
            Assert.Equal(AppName, Str(labels, "app.kubernetes.io/name"));
            Assert.Contains(Str(labels, "app.kubernetes.io/component"), Components);
            Assert.False(Map(c, "metadata").Children.ContainsKey("namespace"));
        }
    }

    [Fact]
    public void Workloads_select_their_own_pod_labels()
    {
        var m = All.Value;
        foreach (var d in m.Of<V1Deployment>())
            Assert.True(Selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels), d.Metadata.Name);
        foreach (var s in m.Of<V1StatefulSet>())
            Assert.True(Selects(s.Spec.Selector.MatchLabels, s.Spec.Template.Metadata.Labels), s.Metadata.Name);
    }

    [Fact]
    public void Coordinator_service_exposes_grpc_http_and_the_gradient_socket_and_selects_the_coordinator_pods()
    {
        var m = All.Value;
        var service = m.Of<V1Service>().Single(s => Component(s.Metadata) == "coordinator");
        var ports = service.Spec.Ports.ToDictionary(p => p.Name, p => p.Port);
        Assert.Equal(5000, ports["grpc"]);
        Assert.Equal(5001, ports["http"]);
        Assert.Equal(5002, ports["gradients"]);

        var deployment = Coordinator(m);
        Assert.True(Selects(service.Spec.Selector, deployment.Spec.Template.Metadata.Labels));
        Assert.False(Selects(service.Spec.Selector, Worker(m).Spec.Template.Metadata.Labels));

        // The Service's named target ports exist on the container with the right numbers.
        var container = deployment.Spec.Template.Spec.Containers.Single();
        var containerPorts = container.Ports.ToDictionary(p => p.Name, p => p.ContainerPort);
        foreach (var p in service.Spec.Ports)
            Assert.Equal(p.Port, containerPorts[p.TargetPort.Value]);
    }

    [Fact]
    public void Coordinator_is_a_single_recreated_replica_ready_on_grpc_health_alive_on_healthz_with_persistent_state()
    {
        var m = All.Value;
        var deployment = Coordinator(m);
        Assert.Equal(1, deployment.Spec.Replicas);
        Assert.Equal("Recreate", deployment.Spec.Strategy.Type);

        var container = deployment.Spec.Template.Spec.Containers.Single();
        Assert.Equal(HealthEndpoints.ReadinessService, container.ReadinessProbe?.Grpc?.Service);
        Assert.Equal(5000, container.ReadinessProbe!.Grpc.Port);
        Assert.Equal("/healthz", container.LivenessProbe?.HttpGet?.Path);
        Assert.Equal("http", container.LivenessProbe!.HttpGet.Port.Value);
        Assert.NotNull(container.Resources?.Requests);

        var env = container.Env.ToDictionary(e => e.Name);
        Assert.Equal("5000", env["ORCH_GRPC_PORT"].Value);
        Assert.Equal("5001", env["ORCH_HTTP_PORT"].Value);
        Assert.Equal("5002", env["ORCH_GRADIENT_PORT"].Value);
        Assert.Equal("0.0.0.0", env["ORCH_BIND"].Value);
        var redisService = m.Of<V1Service>().Single(s => Component(s.Metadata) == "redis");
        Assert.Equal($"{redisService.Metadata.Name}:{redisService.Spec.Ports.Single().Port}", env["ORCH_REDIS"].Value);
        AssertOptionalToken(env["ORCH_TOKEN"]);

        // State and checkpoints live on the claimed volume.
        var claim = m.Of<V1PersistentVolumeClaim>().Single(c => Component(c.Metadata) == "coordinator");
        var volume = deployment.Spec.Template.Spec.Volumes.Single(v => v.PersistentVolumeClaim?.ClaimName == claim.Metadata.Name);
        var mount = container.VolumeMounts.Single(v => v.Name == volume.Name).MountPath;
        Assert.StartsWith(mount + "/", env["ORCH_STATE_DIR"].Value, StringComparison.Ordinal);
        Assert.StartsWith(mount + "/", env["ORCH_CHECKPOINT_DIR"].Value, StringComparison.Ordinal);
    }

    [Fact]
    public void Worker_asks_for_a_gpu_advertises_its_pod_ip_and_serves_metrics()
    {
        var m = All.Value;
        var worker = Worker(m);
        var pod = worker.Spec.Template.Spec;
        var container = pod.Containers.Single();

        Assert.Equal(new ResourceQuantity("1"), container.Resources.Limits["nvidia.com/gpu"]);
        Assert.Equal(new ResourceQuantity("1"), container.Resources.Requests["nvidia.com/gpu"]);
        Assert.Equal("/readyz", container.ReadinessProbe?.HttpGet?.Path);
        Assert.Equal("/healthz", container.LivenessProbe?.HttpGet?.Path);
        Assert.True(pod.TerminationGracePeriodSeconds >= 300);

        var env = container.Env.ToDictionary(e => e.Name);
        Assert.Equal("status.podIP", env["POD_IP"].ValueFrom.FieldRef.FieldPath);
        AssertOptionalToken(env["ORCH_TOKEN"]);
        var coordinatorService = m.Of<V1Service>().Single(s => Component(s.Metadata) == "coordinator");
        Assert.Equal($"http://{coordinatorService.Metadata.Name}:5000", env["ORCH_COORDINATOR"].Value);

        var args = container.Args;
        Assert.Equal("worker", args[0]);
        Assert.Equal("$(POD_IP)", Flag(args, "--advertise-host"));
        Assert.Equal("$(ORCH_COORDINATOR)", Flag(args, "--coordinator"));
        Assert.Equal("0.0.0.0", Flag(args, "--metrics-bind"));
        var metrics = container.Ports.Single(p => p.Name == "metrics");
        Assert.Equal(9464, metrics.ContainerPort);
        Assert.Equal("9464", Flag(args, "--metrics-port"));
        Assert.Equal(Flag(args, "--data-port"), container.Ports.Single(p => p.Name == "data").ContainerPort.ToString(System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public void Redis_persists_append_only_on_a_claimed_volume_behind_its_service()
    {
        var m = All.Value;
        var redis = m.Of<V1StatefulSet>().Single(s => Component(s.Metadata) == "redis");
        var container = redis.Spec.Template.Spec.Containers.Single();
        Assert.Equal("yes", Flag(container.Args, "--appendonly"));
        Assert.Equal("everysec", Flag(container.Args, "--appendfsync"));

        var template = redis.Spec.VolumeClaimTemplates.Single();
        var dataDir = Flag(container.Args, "--dir");
        Assert.Equal(dataDir, container.VolumeMounts.Single(v => v.Name == template.Metadata.Name).MountPath);

        var service = m.Of<V1Service>().Single(s => Component(s.Metadata) == "redis");
        Assert.Equal(redis.Spec.ServiceName, service.Metadata.Name);
        Assert.True(Selects(service.Spec.Selector, redis.Spec.Template.Metadata.Labels));
        Assert.Equal(6379, service.Spec.Ports.Single().Port);
    }

    [Fact]
    public void Monitors_scrape_the_coordinator_http_port_and_the_worker_metrics_port()
    {
        var m = All.Value;
        var serviceMonitor = m.Custom.Single(c => Str(c, "kind") == "ServiceMonitor");
        Assert.Equal("monitoring.coreos.com/v1", Str(serviceMonitor, "apiVersion"));
        var spec = Map(serviceMonitor, "spec");
        var endpoint = (YamlMappingNode)Seq(spec, "endpoints").Single();
        Assert.Equal("http", Str(endpoint, "port"));
        Assert.Equal("/metrics", Str(endpoint, "path"));
        var coordinatorService = m.Of<V1Service>().Single(s => Component(s.Metadata) == "coordinator");
        Assert.True(Selects(Labels(Map(Map(spec, "selector"), "matchLabels")), coordinatorService.Metadata.Labels));
        Assert.Contains(coordinatorService.Spec.Ports, p => p.Name == "http");

        var podMonitor = m.Custom.Single(c => Str(c, "kind") == "PodMonitor");
        Assert.Equal("monitoring.coreos.com/v1", Str(podMonitor, "apiVersion"));
        spec = Map(podMonitor, "spec");
        endpoint = (YamlMappingNode)Seq(spec, "podMetricsEndpoints").Single();
        Assert.Equal("metrics", Str(endpoint, "port"));
        Assert.Equal("/metrics", Str(endpoint, "path"));
        var worker = Worker(m);
        Assert.True(Selects(Labels(Map(Map(spec, "selector"), "matchLabels")), worker.Spec.Template.Metadata.Labels));
        Assert.False(Selects(Labels(Map(Map(spec, "selector"), "matchLabels")), Coordinator(m).Spec.Template.Metadata.Labels));
    }

    [Fact]
    public void Keda_scales_the_worker_deployment_on_pending_plus_busy_workers()
    {
        var m = All.Value;
        var scaled = m.Custom.Single(c => Str(c, "kind") == "ScaledObject");
        Assert.Equal("keda.sh/v1alpha1", Str(scaled, "apiVersion"));
        var spec = Map(scaled, "spec");
        var target = Map(spec, "scaleTargetRef");
        Assert.Equal("Deployment", Str(target, "kind"));
        Assert.Equal(Worker(m).Metadata.Name, Str(target, "name"));
        var trigger = (YamlMappingNode)Seq(spec, "triggers").Single();
        Assert.Equal("prometheus", Str(trigger, "type"));
        Assert.Equal("sum(orch_queue_pending_workers) + sum(orch_workers{state=\"busy\"})", Str(Map(trigger, "metadata"), "query"));
    }

    [Fact]
    public void Dashboard_config_map_is_the_dashboard_file_for_the_grafana_sidecar()
    {
        var m = All.Value;
        var map = m.Of<V1ConfigMap>().Single();
        Assert.Equal("1", map.Metadata.Labels["grafana_dashboard"]);
        var embedded = map.Data.Single();
        Assert.EndsWith(".json", embedded.Key, StringComparison.Ordinal);

        using var dashboard = JsonDocument.Parse(embedded.Value);
        var variables = dashboard.RootElement.GetProperty("templating").GetProperty("list").EnumerateArray()
            .ToDictionary(v => v.GetProperty("name").GetString()!, v => v);
        Assert.Equal("datasource", variables["datasource"].GetProperty("type").GetString());
        Assert.Equal("prometheus", variables["datasource"].GetProperty("query").GetString());
        Assert.Equal("label_values(orch_trial_epoch, sweep)", variables["sweep"].GetProperty("definition").GetString());
        Assert.NotEmpty(dashboard.RootElement.GetProperty("panels").EnumerateArray());

        // The embedded copy has not drifted from k8s/grafana/orchestrator-dashboard.json.
        using var file = JsonDocument.Parse(File.ReadAllText(Path.Combine(m.Directory, "grafana", "orchestrator-dashboard.json")));
        Assert.True(JsonElement.DeepEquals(file.RootElement, dashboard.RootElement));
        // Nor has the Helm chart's copy (a chart cannot reach files outside its folder).
        using var chart = JsonDocument.Parse(File.ReadAllText(Path.Combine(m.Directory, "..", "helm", "orchestrator", "files", "orchestrator-dashboard.json")));
        Assert.True(JsonElement.DeepEquals(file.RootElement, chart.RootElement), "helm/orchestrator/files/orchestrator-dashboard.json differs from k8s/grafana/");
    }

    [Fact]
    public void Kustomization_lists_existing_files_only()
    {
        var m = All.Value;
        var yaml = new YamlStream();
        yaml.Load(new StringReader(File.ReadAllText(Path.Combine(m.Directory, "kustomization.yaml"))));
        var resources = Seq((YamlMappingNode)yaml.Documents.Single().RootNode, "resources").Select(n => ((YamlScalarNode)n).Value!).ToList();
        Assert.Contains("coordinator.yaml", resources);
        Assert.Contains("worker.yaml", resources);
        Assert.Contains("redis.yaml", resources);
        foreach (var r in resources) Assert.True(File.Exists(Path.Combine(m.Directory, r)), r);
    }

    private static void AssertOptionalToken(V1EnvVar token)
    {
        Assert.Null(token.Value);
        Assert.Equal("token", token.ValueFrom.SecretKeyRef.Key);
        Assert.True(token.ValueFrom.SecretKeyRef.Optional);
    }

    private static V1Deployment Coordinator(Manifests m) => m.Of<V1Deployment>().Single(d => Component(d.Metadata) == "coordinator");
    private static V1Deployment Worker(Manifests m) => m.Of<V1Deployment>().Single(d => Component(d.Metadata) == "worker");
    private static string? Component(V1ObjectMeta meta) => meta.Labels?.TryGetValue("app.kubernetes.io/component", out var c) == true ? c : null;

    private static bool Selects(IDictionary<string, string>? selector, IDictionary<string, string>? labels) =>
        selector is { Count: > 0 } && labels is not null && selector.All(kv => labels.TryGetValue(kv.Key, out var v) && v == kv.Value);

    private static string Flag(IList<string> args, string name)
    {
        var i = args.IndexOf(name);
        Assert.True(i >= 0 && i + 1 < args.Count, $"missing {name}");
        return args[i + 1];
    }

    private static YamlMappingNode Map(YamlMappingNode node, string key) => (YamlMappingNode)node.Children[new YamlScalarNode(key)];
    private static YamlSequenceNode Seq(YamlMappingNode node, string key) => (YamlSequenceNode)node.Children[new YamlScalarNode(key)];
    private static string Str(YamlMappingNode node, string key) => ((YamlScalarNode)node.Children[new YamlScalarNode(key)]).Value!;
    private static Dictionary<string, string> Labels(YamlMappingNode node) =>
        node.Children.ToDictionary(kv => ((YamlScalarNode)kv.Key).Value!, kv => ((YamlScalarNode)kv.Value).Value!);

    /// <summary>Every object of every k8s/*.yaml (kustomization.yaml aside).</summary>
    private sealed record Manifests(string Directory, List<object> Typed, List<YamlMappingNode> Custom)
    {
        public IEnumerable<T> Of<T>() => Typed.OfType<T>();

        public static Manifests Load()
        {
            var dir = Path.Combine(Orchestrator.TestSupport.RepositoryRoot.Path, "k8s");
            var typed = new List<object>();
            var custom = new List<YamlMappingNode>();
            var files = System.IO.Directory.GetFiles(dir, "*.yaml").Where(f => Path.GetFileName(f) != "kustomization.yaml").Order(StringComparer.Ordinal).ToList();
            Assert.NotEmpty(files);
            foreach (var file in files)
            {
                var text = File.ReadAllText(file);
                var yaml = new YamlStream();
                yaml.Load(new StringReader(text));
                var kinds = yaml.Documents.Select(d => Str((YamlMappingNode)d.RootNode, "kind")).ToList();
                if (kinds.All(k => CustomKinds.Contains(k)))
                {
                    custom.AddRange(yaml.Documents.Select(d => (YamlMappingNode)d.RootNode));
                    continue;
                }
                // Built-in kinds only in a file with any: the client's strict multi-document loader.
                Assert.DoesNotContain(kinds, k => CustomKinds.Contains(k));
                var objects = KubernetesYaml.LoadAllFromString(text, strict: true);
                Assert.Equal(kinds, objects.Select(o => ((IKubernetesObject)o).Kind));
                typed.AddRange(objects);
            }
            return new Manifests(dir, typed, custom);
        }
    }
}

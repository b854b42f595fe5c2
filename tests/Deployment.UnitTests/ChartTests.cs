using System.Text.Json;
using k8s.Models;
using Orchestrator.Deployment.UnitTests.Rendering;

namespace Orchestrator.Deployment.UnitTests;

/// <summary>The chart linted and rendered by the real helm, every object validated against its schema, and wrong values refused.</summary>
public sealed class ChartTests
{
    public static TheoryData<string> ValueSets => new(Render.ValueSets);

    [Fact]
    public void The_chart_has_the_value_sets_the_checks_rely_on()
    {
        Assert.Equal(["defaults", "external-redis", "keda", "multi-gpu", "tls"], Render.ValueSets);
    }

    [Theory]
    [MemberData(nameof(ValueSets))]
    public void Chart_passes_helm_lint_strict_with_each_value_set(string valueSet)
    {
        Render.Lint("-f", $"helm/orchestrator/ci/{valueSet}-values.yaml").ShouldSucceed("helm lint --strict " + valueSet);
    }

    [Theory]
    [MemberData(nameof(Render.All), MemberType = typeof(Render))]
    public void Every_rendered_object_passes_its_Kubernetes_or_CRD_schema(string name)
    {
        var render = Render.Get(name);
        var results = Validate(render.Files);
        Assert.True(results.ExitCode == 0, $"{name}: objects fail their schema:\n{results.Output}");
        var validated = results.Lines.Select(l => $"{l.GetProperty("kind").GetString()}/{l.GetProperty("name").GetString()}").Order(StringComparer.Ordinal);
        Assert.Equal(render.Objects.Select(o => $"{o.Kind}/{o.Name}").Order(StringComparer.Ordinal), validated);
    }

    [Fact]
    public void Schema_validation_fails_on_a_wrong_type_and_on_an_unknown_kind()
    {
        var file = Path.Combine(Path.GetTempPath(), $"orch-bad-objects-{Environment.ProcessId}.yaml");
        File.WriteAllText(file, """
            apiVersion: keda.sh/v1alpha1
            kind: ScaledObject
            metadata: { name: w }
            spec: { scaleTargetRef: { name: w }, minReplicaCount: zero, triggers: [] }
            ---
            apiVersion: v1
            kind: Service
            metadata: { name: s }
            spec: { ports: [{ port: http }] }
            ---
            apiVersion: example.com/v1
            kind: Widget
            metadata: { name: x }
            """);
        var results = Validate([file]);
        Assert.Equal(1, results.ExitCode);
        Assert.Contains("spec/minReplicaCount must be integer", results.Output, StringComparison.Ordinal);
        Assert.Contains("spec/ports/0/port must be integer", results.Output, StringComparison.Ordinal);
        Assert.Contains("no schema for example.com/v1 Widget", results.Output, StringComparison.Ordinal);
    }

    /// <summary>Values values.schema.json must refuse, and the field its message must name.</summary>
    public static TheoryData<string, string> WrongValues => new()
    {
        { "worker.gpus=-1", "/worker/gpus" },
        { "worker.gpu=1", "additional properties 'gpu' not allowed" },
        { "worker.device=tpu", "/worker/device" },
        { "worker.gpus=0", "/worker/gpus" }, // worker.device is cuda
        { "worker.replicas=two", "/worker/replicas" },
        { "worker.tolerations[0].effect=Sometimes", "/worker/tolerations/0/effect" },
        { "worker.nodeSelector.gpu=true", "/worker/nodeSelector/gpu" },
        { "worker.podDisruptionBudget.maxUnavailable=lots", "/worker/podDisruptionBudget/maxUnavailable" },
        { "coordinator.httpPort=70000", "/coordinator/httpPort" },
        { "coordinator.resources.requests.memory=lots", "/coordinator/resources/requests/memory" },
        { "image.pullPolicy=Sometimes", "/image/pullPolicy" },
        { "image.worker.tag=", "/image/worker/tag" },
        { "metrics.interval=often", "/metrics/interval" },
        { "keda.minReplicas=-1", "/keda/minReplicas" },
        { "keda.prometheusAddress=prometheus:9090", "/keda/prometheusAddress" },
        { "redis.externalAddress=redis", "/redis/externalAddress" },
        { "redis.externalAddress=redis:6379", "/redis/externalAddress" }, // redis.enabled is true
        { "logFormat=xml", "/logFormat" },
    };

    [Theory]
    [MemberData(nameof(WrongValues))]
    public void Wrong_values_are_refused_by_helm_template_and_lint_with_a_message_naming_the_field(string set, string expected)
    {
        var template = Render.Template("--set", set);
        Assert.True(template.ExitCode != 0, $"helm template --set {set} was accepted");
        Assert.Contains(expected, template.Output, StringComparison.Ordinal);

        var lint = Render.Lint("--set", set);
        Assert.True(lint.ExitCode != 0, $"helm lint --strict --set {set} was accepted");
        Assert.Contains(expected, lint.Output, StringComparison.Ordinal);
    }

    /// <summary>Rules between values that a JSON schema cannot express: the templates fail on them.</summary>
    public static TheoryData<string, string> WrongCombinations => new()
    {
        { "worker.drainTimeoutSeconds=900", "worker.drainTimeoutSeconds (900) must be at least 60 below worker.terminationGracePeriodSeconds (900)" },
        { "worker.drainTimeoutSeconds=600,worker.terminationGracePeriodSeconds=620", "worker.drainTimeoutSeconds (600) must be at least 60 below" },
        { "keda.enabled=true,keda.minReplicas=4,keda.maxReplicas=2", "keda.maxReplicas (2) must not be below keda.minReplicas (4)" },
    };

    /// <remarks>helm lint does not run a template's fail (it logs it): only helm template, and so install, refuses these.</remarks>
    [Theory]
    [MemberData(nameof(WrongCombinations))]
    public void Wrong_combinations_of_values_are_refused_by_helm_template_with_a_message_naming_both(string set, string expected)
    {
        var template = Render.Template("--set", set);
        Assert.True(template.ExitCode != 0, $"helm template --set {set} was accepted");
        Assert.Contains(expected, template.Output, StringComparison.Ordinal);
    }

    [Fact]
    public void Keda_value_set_scales_workers_from_zero_and_leaves_their_replica_count_to_KEDA()
    {
        var render = Render.Get("helm:keda");
        Assert.Null(render.Deployment("worker").Spec.Replicas);
        var spec = render.OfKind("ScaledObject").Single().Yaml.Child("spec")!;
        Assert.Equal("0", spec.Scalar("minReplicaCount"));
        Assert.Equal("16", spec.Scalar("maxReplicaCount"));
        Assert.Equal("kube-prometheus-stack", render.OfKind("ServiceMonitor").Single().Yaml.Child("metadata")!.Child("labels")!.Scalar("release"));
        Assert.Empty(Render.Get("helm:defaults").OfKind("ScaledObject"));
    }

    [Fact]
    public void External_redis_value_set_runs_no_redis_and_points_the_coordinator_at_the_given_address()
    {
        var render = Render.Get("helm:external-redis");
        Assert.DoesNotContain(render.Objects, o => o.Component == "redis");
        Assert.Empty(render.OfKind("ServiceMonitor"));
        var env = render.Container("coordinator").Env.ToDictionary(e => e.Name);
        Assert.Equal("redis-master.data.svc:6379", env["ORCH_REDIS"].Value);
        Assert.Equal("orch-auth", env["ORCH_TOKEN"].ValueFrom.SecretKeyRef.Name);
        Assert.Equal("bearer", env["ORCH_TOKEN"].ValueFrom.SecretKeyRef.Key);
        // Per-role tokens: the coordinator knows each; workers present the worker token, not the coordinator's.
        Assert.Equal(("worker", "user", "viewer"), (env["ORCH_WORKER_TOKEN"].ValueFrom.SecretKeyRef.Key, env["ORCH_USER_TOKEN"].ValueFrom.SecretKeyRef.Key, env["ORCH_VIEWER_TOKEN"].ValueFrom.SecretKeyRef.Key));
        var worker = render.Container("worker").Env.ToDictionary(e => e.Name);
        Assert.Equal(("orch-auth", "worker"), (worker["ORCH_TOKEN"].ValueFrom.SecretKeyRef.Name, worker["ORCH_TOKEN"].ValueFrom.SecretKeyRef.Key));
        Assert.DoesNotContain("ORCH_WORKER_TOKEN", worker.Keys);
        // By default a worker presents the coordinator's token, and the coordinator has no role tokens.
        var defaults = Render.Get("helm:defaults");
        Assert.Equal("token", defaults.Container("worker").Env.Single(e => e.Name == "ORCH_TOKEN").ValueFrom.SecretKeyRef.Key);
        Assert.DoesNotContain(defaults.Container("coordinator").Env, e => e.Name is "ORCH_WORKER_TOKEN" or "ORCH_USER_TOKEN" or "ORCH_VIEWER_TOKEN");
    }

    [Fact]
    public void Tls_value_set_serves_tls_from_the_secret_probes_over_https_and_gives_workers_only_the_ca_and_their_client_certificate()
    {
        var render = Render.Get("helm:tls");
        var coordinator = render.Container("coordinator");
        var env = coordinator.Env.ToDictionary(e => e.Name, e => e.Value);
        Assert.Equal(("/etc/orchestrator/tls/tls.crt", "/etc/orchestrator/tls/tls.key", "/etc/orchestrator/tls/ca.crt"),
            (env["ORCH_TLS_CERT"], env["ORCH_TLS_KEY"], env["ORCH_TLS_CLIENT_CA"]));
        Assert.Contains(coordinator.VolumeMounts, m => m.Name == "tls" && m.MountPath == "/etc/orchestrator/tls" && m.ReadOnlyProperty == true);
        // The kubelet's gRPC probe has no TLS: readiness and liveness go over HTTPS.
        Assert.Null(coordinator.ReadinessProbe.Grpc);
        Assert.Equal(("/readyz", "HTTPS"), (coordinator.ReadinessProbe.HttpGet.Path, coordinator.ReadinessProbe.HttpGet.Scheme));
        Assert.Equal("HTTPS", coordinator.LivenessProbe.HttpGet.Scheme);
        var tlsVolume = render.Deployment("coordinator").Spec.Template.Spec.Volumes.Single(v => v.Name == "tls");
        Assert.Equal("orchestrator-tls", tlsVolume.Secret.SecretName);

        var worker = render.Container("worker");
        var workerEnv = worker.Env.ToDictionary(e => e.Name, e => e.Value);
        Assert.StartsWith("https://", workerEnv["ORCH_COORDINATOR"], StringComparison.Ordinal);
        Assert.Equal(("/etc/orchestrator/tls/ca.crt", "/etc/orchestrator/client/tls.crt", "/etc/orchestrator/client/tls.key"),
            (workerEnv["ORCH_TLS_CA"], workerEnv["ORCH_TLS_CLIENT_CERT"], workerEnv["ORCH_TLS_CLIENT_KEY"]));
        var volumes = render.Deployment("worker").Spec.Template.Spec.Volumes.ToDictionary(v => v.Name);
        // A worker pod never sees the coordinator's private key: only ca.crt of its Secret is mounted.
        Assert.Equal(["ca.crt"], volumes["tls-ca"].Secret.Items.Select(i => i.Key));
        Assert.Equal("orchestrator-worker-tls", volumes["tls-client"].Secret.SecretName);

        var scrape = Assert.Single(render.OfKind("ServiceMonitor").Single().Yaml.Child("spec")!.Items("endpoints"));
        Assert.Equal("https", scrape.Scalar("scheme"));
        Assert.Equal(("orchestrator-tls", "ca.crt"), (scrape.Child("tlsConfig")!.Child("ca")!.Child("secret")!.Scalar("name"), scrape.Child("tlsConfig")!.Child("ca")!.Child("secret")!.Scalar("key")));

        // Without TLS: plain text, the gRPC readiness probe, no TLS variables.
        var plain = Render.Get("helm:defaults").Container("coordinator");
        Assert.NotNull(plain.ReadinessProbe.Grpc);
        Assert.DoesNotContain(plain.Env, e => e.Name.StartsWith("ORCH_TLS_", StringComparison.Ordinal));
    }

    [Fact]
    public void Multi_gpu_value_set_requests_eight_gpus_on_selected_and_tolerated_nodes()
    {
        var render = Render.Get("helm:multi-gpu");
        var pod = render.Deployment("worker").Spec.Template.Spec;
        var resources = pod.Containers.Single().Resources;
        Assert.Equal(new ResourceQuantity("8"), resources.Requests["nvidia.com/gpu"]);
        Assert.Equal(new ResourceQuantity("8"), resources.Limits["nvidia.com/gpu"]);
        Assert.Equal("NVIDIA-H100-80GB-HBM3", pod.NodeSelector["nvidia.com/gpu.product"]);
        Assert.Contains(pod.Tolerations, t => t.Key == "nvidia.com/gpu" && t.OperatorProperty == "Exists");
        Assert.Contains(pod.Tolerations, t => t.Key == "dedicated" && t.Value == "training");
        Assert.Equal("registry.example.com/ml/orchestrator-worker-cuda:0.1.0", pod.Containers.Single().Image);
        Assert.Equal("50%", render.Of<V1PodDisruptionBudget>().Single().Spec.MaxUnavailable.Value);
        // The coordinator asks for no GPU.
        Assert.DoesNotContain("nvidia.com/gpu", render.Container("coordinator").Resources.Limits?.Keys ?? []);
    }

    private static ValidationResults Validate(IReadOnlyList<string> files)
    {
        var script = Path.Combine(K8sTools.RepositoryRoot, "tests", "Deployment.UnitTests", "validate-objects.mjs");
        var result = K8sTools.Run("node", [script, K8sTools.SchemaPackages, .. files]);
        var lines = result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        return new ValidationResults(result.ExitCode, result.Output, lines);
    }

    private sealed record ValidationResults(int ExitCode, string Output, List<JsonElement> Lines);
}

using k8s;
using k8s.Models;
using Orchestrator.Deployment.UnitTests.Rendering;

namespace Orchestrator.Deployment.UnitTests;

/// <summary>
/// k8s/ and the chart describe one deployment: rendered with the release name "orchestrator", the
/// chart's defaults must give the same objects as the manifests, labels and pull policy aside.
/// </summary>
public sealed class RenderAgreementTests
{
    private static Render Manifests => Render.Get(Render.Manifests);
    private static Render Chart => Render.Get("helm:defaults");

    [Fact]
    public void Both_render_the_same_kinds_and_names()
    {
        // The manifests carry the optional ScaledObject; the chart renders it with keda.enabled.
        var chart = Render.Get("helm:keda").Objects.Select(o => $"{o.Kind}/{o.Name}").Order(StringComparer.Ordinal);
        Assert.Equal(Manifests.Objects.Select(o => $"{o.Kind}/{o.Name}").Order(StringComparer.Ordinal), chart);
    }

    [Theory]
    [InlineData("coordinator")]
    [InlineData("worker")]
    public void Containers_agree_on_image_ports_probes_args_env_resources_security_and_mounts(string component)
    {
        var expected = Manifests.Container(component);
        var actual = Chart.Container(component);
        Same(expected.Image, actual.Image, "image");
        Same(expected.Ports, actual.Ports, "ports");
        Same(expected.ReadinessProbe, actual.ReadinessProbe, "readinessProbe");
        Same(expected.LivenessProbe, actual.LivenessProbe, "livenessProbe");
        Same(expected.Args, actual.Args, "args");
        Same(expected.Command, actual.Command, "command");
        Same(expected.Env, actual.Env, "env");
        Same(expected.Resources, actual.Resources, "resources");
        Same(expected.SecurityContext, actual.SecurityContext, "securityContext");
        Same(expected.VolumeMounts, actual.VolumeMounts, "volumeMounts");
    }

    [Theory]
    [InlineData("coordinator")]
    [InlineData("worker")]
    public void Pods_agree_on_replicas_strategy_security_scheduling_grace_and_volumes(string component)
    {
        var expected = Manifests.Deployment(component);
        var actual = Chart.Deployment(component);
        Same(expected.Spec.Replicas, actual.Spec.Replicas, "replicas");
        Same(expected.Spec.Strategy, actual.Spec.Strategy, "strategy");
        var (e, a) = (expected.Spec.Template.Spec, actual.Spec.Template.Spec);
        Same(e.SecurityContext, a.SecurityContext, "securityContext");
        Same(e.Tolerations, a.Tolerations, "tolerations");
        Same(e.NodeSelector, a.NodeSelector, "nodeSelector");
        Same(e.TerminationGracePeriodSeconds, a.TerminationGracePeriodSeconds, "terminationGracePeriodSeconds");
        Same(e.Volumes, a.Volumes, "volumes");
    }

    [Fact]
    public void Services_claims_redis_and_disruption_budget_agree()
    {
        foreach (var component in new[] { "coordinator", "redis" })
        {
            Same(Manifests.Of<V1Service>().Single(s => Component(s.Metadata) == component).Spec.Ports,
                Chart.Of<V1Service>().Single(s => Component(s.Metadata) == component).Spec.Ports, component + " Service ports");
        }
        Same(Manifests.Of<V1PersistentVolumeClaim>().Single().Spec, Chart.Of<V1PersistentVolumeClaim>().Single().Spec, "coordinator claim");
        var (redis, chartRedis) = (Manifests.Of<V1StatefulSet>().Single().Spec, Chart.Of<V1StatefulSet>().Single().Spec);
        Same(redis.Template.Spec.Containers, chartRedis.Template.Spec.Containers, "redis containers");
        Same(redis.Template.Spec.SecurityContext, chartRedis.Template.Spec.SecurityContext, "redis securityContext");
        Same(redis.VolumeClaimTemplates.Single().Spec, chartRedis.VolumeClaimTemplates.Single().Spec, "redis claim");
        Same(Manifests.Of<V1PodDisruptionBudget>().Single().Spec.MaxUnavailable, Chart.Of<V1PodDisruptionBudget>().Single().Spec.MaxUnavailable, "PDB maxUnavailable");
    }

    [Fact]
    public void Monitors_and_scaled_object_agree()
    {
        foreach (var kind in new[] { "ServiceMonitor", "PodMonitor" })
        {
            var endpoints = kind == "ServiceMonitor" ? "endpoints" : "podMetricsEndpoints";
            Assert.Equal(Endpoints(Manifests, kind, endpoints), Endpoints(Chart, kind, endpoints));
        }
        var k8s = Manifests.OfKind("ScaledObject").Single().Yaml.Child("spec")!;
        var chart = Render.Get("helm:keda").OfKind("ScaledObject").Single().Yaml.Child("spec")!;
        Assert.Equal(k8s.Scalar("minReplicaCount"), chart.Scalar("minReplicaCount"));
        Assert.Equal(k8s.Child("scaleTargetRef").Strings(), chart.Child("scaleTargetRef").Strings());
        var (t1, t2) = (k8s.Items("triggers").Single(), chart.Items("triggers").Single());
        Assert.Equal(t1.Scalar("type"), t2.Scalar("type"));
        Assert.Equal(t1.Child("metadata")!.Scalar("query"), t2.Child("metadata")!.Scalar("query"));
        Assert.Equal(t1.Child("metadata")!.Scalar("threshold"), t2.Child("metadata")!.Scalar("threshold"));
    }

    private static List<string> Endpoints(Render render, string kind, string key) =>
        render.OfKind(kind).Single().Yaml.Child("spec")!.Items(key).Select(e => string.Join(",", e.Strings().Select(kv => $"{kv.Key}={kv.Value}").Order(StringComparer.Ordinal))).ToList();

    private static string? Component(V1ObjectMeta meta) => meta.Labels?.TryGetValue("app.kubernetes.io/component", out var c) == true ? c : null;

    private static string Json(object? value) => value is null ? "null" : KubernetesJson.Serialize(value);

    private static void Same<T>(T expected, T actual, string what)
    {
        var (e, a) = (Json(expected), Json(actual));
        Assert.True(e == a, $"{what} differs between k8s/ and the chart's defaults:\n  k8s/:  {e}\n  chart: {a}");
    }
}

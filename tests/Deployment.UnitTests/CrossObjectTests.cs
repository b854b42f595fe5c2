using System.Globalization;
using System.Text.RegularExpressions;
using k8s.Models;
using Orchestrator.Coordinator.Hosting;
using Orchestrator.Cli;
using Orchestrator.Configuration;
using Orchestrator.Deployment.UnitTests.Rendering;

namespace Orchestrator.Deployment.UnitTests;

/// <summary>
/// What schemas cannot check, for every render (k8s/ and each chart value set): objects that refer
/// to each other agree, and the pods match the programs they run.
/// </summary>
public sealed partial class CrossObjectTests
{
    /// <summary>After the drain timeout a worker still needs a moment to stop its trials and exit before SIGKILL.</summary>
    private const int StopAfterDrainSeconds = 60;
    private const int ImageUser = 1654;

    [Theory]
    [MemberData(nameof(Render.All), MemberType = typeof(Render))]
    public void Workloads_select_their_own_pods_and_no_other_components(string name)
    {
        var render = Render.Get(name);
        var pods = PodLabels(render);
        Assert.Contains("coordinator", pods.Keys);
        Assert.Contains("worker", pods.Keys);
        foreach (var d in render.Of<V1Deployment>())
            AssertSelectsOnly(d.Spec.Selector.MatchLabels, d.Metadata.Labels["app.kubernetes.io/component"], pods, d.Metadata.Name);
        foreach (var s in render.Of<V1StatefulSet>())
        {
            AssertSelectsOnly(s.Spec.Selector.MatchLabels, s.Metadata.Labels["app.kubernetes.io/component"], pods, s.Metadata.Name);
            Assert.Contains(render.Of<V1Service>(), svc => svc.Metadata.Name == s.Spec.ServiceName);
        }
        foreach (var pdb in render.Of<V1PodDisruptionBudget>())
            AssertSelectsOnly(pdb.Spec.Selector.MatchLabels, "worker", pods, "PodDisruptionBudget " + pdb.Metadata.Name);
    }

    [Theory]
    [MemberData(nameof(Render.All), MemberType = typeof(Render))]
    public void Services_select_one_component_and_target_its_named_container_ports(string name)
    {
        var render = Render.Get(name);
        var pods = PodLabels(render);
        foreach (var service in render.Of<V1Service>())
        {
            var component = service.Metadata.Labels["app.kubernetes.io/component"];
            AssertSelectsOnly(service.Spec.Selector, component, pods, "Service " + service.Metadata.Name);
            var ports = ContainerPorts(render, component);
            foreach (var p in service.Spec.Ports)
            {
                Assert.True(ports.TryGetValue(p.TargetPort.Value, out var number), $"Service {service.Metadata.Name} targets port '{p.TargetPort.Value}', which no {component} container names");
                Assert.Equal(p.Port, number);
            }
        }
    }

    [Theory]
    [MemberData(nameof(Render.All), MemberType = typeof(Render))]
    public void Monitors_and_the_scaled_object_point_at_existing_objects_ports_and_metrics(string name)
    {
        var render = Render.Get(name);
        var pods = PodLabels(render);
        foreach (var monitor in render.OfKind("ServiceMonitor"))
        {
            var selector = monitor.Yaml.Child("spec")!.Child("selector")!.Child("matchLabels").Strings();
            var service = render.Of<V1Service>().Single(s => Selects(selector, s.Metadata.Labels));
            foreach (var endpoint in monitor.Yaml.Child("spec")!.Items("endpoints"))
                Assert.Contains(service.Spec.Ports, p => p.Name == endpoint.Scalar("port"));
        }
        foreach (var monitor in render.OfKind("PodMonitor"))
        {
            var selector = monitor.Yaml.Child("spec")!.Child("selector")!.Child("matchLabels").Strings();
            AssertSelectsOnly(selector, "worker", pods, "PodMonitor " + monitor.Name);
            foreach (var endpoint in monitor.Yaml.Child("spec")!.Items("podMetricsEndpoints"))
                Assert.Contains(endpoint.Scalar("port")!, ContainerPorts(render, "worker").Keys);
        }
        foreach (var scaled in render.OfKind("ScaledObject"))
        {
            var spec = scaled.Yaml.Child("spec")!;
            Assert.Equal(render.Deployment("worker").Metadata.Name, spec.Child("scaleTargetRef")!.Scalar("name"));
            Assert.Equal("0", spec.Scalar("minReplicaCount"));
            var query = spec.Items("triggers").Single().Child("metadata")!.Scalar("query")!;
            var exported = CoordinatorMetricNames.Value;
            Assert.NotEmpty(MetricName().Matches(query));
            foreach (Match m in MetricName().Matches(query))
                Assert.True(exported.Contains(m.Value), $"the KEDA query uses {m.Value}, which the coordinator does not export ({string.Join(", ", exported)})");
            // Pending demand counts ranks; a pod offers one slot per GPU, so pods wanted = pending ranks / GPUs per pod.
            var gpus = render.Deployment("worker").Spec.Template.Spec.Containers.Single(c => c.Name == "worker").Resources?.Limits?
                .TryGetValue("nvidia.com/gpu", out var q) == true ? int.Parse(q.ToString(), System.Globalization.CultureInfo.InvariantCulture) : 0;
            if (gpus > 1) Assert.Contains($"ceil(sum(orch_queue_pending_workers) / {gpus})", query);
            else Assert.StartsWith("sum(orch_queue_pending_workers) + ", query);
        }
    }

    [Theory]
    [MemberData(nameof(Render.All), MemberType = typeof(Render))]
    public void Worker_arguments_are_an_orch_worker_command_line_that_parses(string name)
    {
        var container = Render.Get(name).Container("worker");
        var env = container.Env.ToDictionary(e => e.Name);
        // Kubernetes expands $(NAME) only for variables the container defines; stand in a value as it would.
        var args = container.Args.Select(a => VariableReference().Replace(a, m =>
        {
            Assert.True(env.TryGetValue(m.Groups[1].Value, out var v), $"argument {a} refers to ${m.Groups[1].Value}, which the container does not define");
            return v.Value ?? "10.1.2.3";
        })).ToArray();
        Assert.Null(container.Command); // the image's entry point is `orch`
        Assert.Equal("worker", args[0]);
        var parse = OrchApp.Build().Parse(args);
        Assert.True(parse.Errors.Count == 0, $"orch {string.Join(' ', args)}: {string.Join("; ", parse.Errors.Select(e => e.Message))}");
        Assert.Equal("worker", parse.CommandResult.Command.Name);
        Assert.Empty(parse.UnmatchedTokens);
    }

    [Fact]
    public void The_orch_command_line_check_can_fail()
    {
        Assert.NotEmpty(OrchApp.Build().Parse(["worker", "--metrics-port", "9464", "--gpus-per-worker", "2"]).Errors);
        Assert.NotEmpty(OrchApp.Build().Parse(["worker", "--drain-timeout", "ten"]).Errors);
    }

    [Theory]
    [MemberData(nameof(Render.All), MemberType = typeof(Render))]
    public void Containers_set_only_environment_variables_their_program_reads(string name)
    {
        var render = Render.Get(name);
        var coordinator = render.Container("coordinator");
        Assert.Null(coordinator.Args); // configured by the environment alone
        Assert.Null(coordinator.Command);
        foreach (var e in coordinator.Env)
            Assert.True(EnvironmentVariables.ReadByCoordinator.Contains(e.Name), $"the coordinator does not read {e.Name}");

        var worker = render.Container("worker");
        var referenced = worker.Args.SelectMany(a => VariableReference().Matches(a)).Select(m => m.Groups[1].Value).ToHashSet();
        foreach (var e in worker.Env)
            Assert.True(EnvironmentVariables.ReadByWorker.Contains(e.Name) || referenced.Contains(e.Name),
                $"orch worker does not read {e.Name}, and no argument refers to it");
    }

    [Fact]
    public void Every_ORCH_variable_the_programs_read_is_named_in_EnvironmentVariables()
    {
        var src = Path.Combine(K8sTools.RepositoryRoot, "src");
        var home = Path.Combine(src, "Shared", "Configuration", "EnvironmentVariables.cs");
        var stray = Directory.EnumerateFiles(src, "*.cs", SearchOption.AllDirectories)
            .Where(f => f != home && !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
            .SelectMany(f => File.ReadLines(f).Where(l => OrchLiteral().IsMatch(l)).Select(l => $"{Path.GetRelativePath(src, f)}: {l.Trim()}"))
            .ToList();
        Assert.True(stray.Count == 0, "ORCH_ names outside EnvironmentVariables:\n" + string.Join('\n', stray));
    }

    [Theory]
    [MemberData(nameof(Render.All), MemberType = typeof(Render))]
    public void Worker_grace_period_outlasts_its_drain_timeout(string name)
    {
        var pod = Render.Get(name).Deployment("worker").Spec.Template.Spec;
        var drain = int.Parse(Flag(pod.Containers.Single().Args, "--drain-timeout"), CultureInfo.InvariantCulture);
        Assert.True(drain > 0, "the worker drains on SIGTERM");
        Assert.True(drain + StopAfterDrainSeconds <= pod.TerminationGracePeriodSeconds,
            $"--drain-timeout {drain} leaves under {StopAfterDrainSeconds} s of the {pod.TerminationGracePeriodSeconds} s grace period");
    }

    [Theory]
    [MemberData(nameof(Render.All), MemberType = typeof(Render))]
    public void Probes_ask_the_health_endpoints_on_ports_the_programs_listen_on(string name)
    {
        var render = Render.Get(name);
        foreach (var (component, port) in new[] { ("coordinator", "http"), ("worker", "metrics") })
        {
            var container = render.Container(component);
            Assert.Equal("/healthz", container.LivenessProbe?.HttpGet?.Path);
            Assert.Equal(port, container.LivenessProbe!.HttpGet.Port.Value);
            Assert.Contains(port, ContainerPorts(render, component).Keys);
        }
        // The coordinator is ready when grpc.health.v1 says so on the gRPC port (a number: gRPC probes take no port names);
        // with TLS (the kubelet's gRPC probe has none) when /readyz says so over HTTPS.
        var readiness = render.Container("coordinator").ReadinessProbe;
        if (render.Container("coordinator").Env.Any(e => e.Name == EnvironmentVariables.TlsCertificate))
        {
            Assert.Equal(("/readyz", "http", "HTTPS"), (readiness?.HttpGet?.Path, readiness!.HttpGet.Port.Value, readiness.HttpGet.Scheme));
            Assert.Equal("HTTPS", render.Container("coordinator").LivenessProbe!.HttpGet.Scheme);
        }
        else
        {
            Assert.Equal(HealthEndpoints.ReadinessService, readiness?.Grpc?.Service);
            Assert.Equal(ContainerPorts(render, "coordinator")["grpc"], readiness!.Grpc.Port);
        }
        // A worker serves no gRPC: it is ready on /readyz of its metrics port.
        Assert.Equal("/readyz", render.Container("worker").ReadinessProbe?.HttpGet?.Path);
        Assert.Equal("metrics", render.Container("worker").ReadinessProbe!.HttpGet.Port.Value);
        var coordinator = render.Container("coordinator").Env.ToDictionary(e => e.Name, e => e.Value);
        Assert.Equal(ContainerPorts(render, "coordinator")["http"].ToString(CultureInfo.InvariantCulture), coordinator[EnvironmentVariables.HttpPort]);
        Assert.Equal(ContainerPorts(render, "coordinator")["grpc"].ToString(CultureInfo.InvariantCulture), coordinator[EnvironmentVariables.GrpcPort]);
        Assert.Equal(ContainerPorts(render, "coordinator")["gradients"].ToString(CultureInfo.InvariantCulture), coordinator[EnvironmentVariables.GradientPort]);
        Assert.Equal("0.0.0.0", coordinator[EnvironmentVariables.Bind]);
        var worker = render.Container("worker").Args;
        Assert.Equal(ContainerPorts(render, "worker")["metrics"].ToString(CultureInfo.InvariantCulture), Flag(worker, "--metrics-port"));
        Assert.Equal("0.0.0.0", Flag(worker, "--metrics-bind"));
        Assert.Equal(ContainerPorts(render, "worker")["data"].ToString(CultureInfo.InvariantCulture), Flag(worker, "--data-port"));
    }

    [Theory]
    [MemberData(nameof(Render.All), MemberType = typeof(Render))]
    public void Pods_run_as_non_root_on_a_read_only_root_with_resources_set(string name)
    {
        var render = Render.Get(name);
        var pods = render.Of<V1Deployment>().Select(d => (d.Metadata.Name, d.Spec.Template.Spec))
            .Concat(render.Of<V1StatefulSet>().Select(s => (s.Metadata.Name, s.Spec.Template.Spec)));
        foreach (var (workload, pod) in pods)
        {
            Assert.True(pod.SecurityContext?.RunAsNonRoot, workload);
            foreach (var c in pod.Containers)
            {
                Assert.True(c.SecurityContext?.ReadOnlyRootFilesystem, $"{workload}/{c.Name}");
                Assert.False(c.SecurityContext?.AllowPrivilegeEscalation ?? true, $"{workload}/{c.Name}");
                Assert.Contains("cpu", c.Resources.Requests.Keys);
                Assert.Contains("memory", c.Resources.Requests.Keys);
                Assert.Contains("memory", c.Resources.Limits.Keys);
                if (c.Resources.Limits.TryGetValue("nvidia.com/gpu", out var gpus)) Assert.Equal(gpus, c.Resources.Requests["nvidia.com/gpu"]);
            }
        }
        foreach (var component in new[] { "coordinator", "worker" })
        {
            var pod = render.Deployment(component).Spec.Template.Spec;
            Assert.Equal(ImageUser, pod.SecurityContext.RunAsUser);
            Assert.Equal(ImageUser, pod.SecurityContext.FsGroup);
            // With a read-only root, every folder the program writes is a volume.
            var mounts = pod.Containers.Single().VolumeMounts.Select(m => m.MountPath).ToList();
            Assert.Contains("/tmp", mounts);
            var writes = component == "worker"
                ? [Flag(pod.Containers.Single().Args, "--work-dir")]
                : pod.Containers.Single().Env.Where(e => e.Name is EnvironmentVariables.StateDir or EnvironmentVariables.CheckpointDir).Select(e => e.Value).ToList();
            Assert.NotEmpty(writes);
            foreach (var path in writes)
                Assert.True(mounts.Any(m => path == m || path.StartsWith(m + "/", StringComparison.Ordinal)), $"{component} writes {path}, which is on the read-only root");
        }
    }

    private static readonly Lazy<HashSet<string>> CoordinatorMetricNames = new(() =>
    {
        // The instruments the coordinator really creates (also the names its Prometheus exporter uses).
        var names = new HashSet<string>();
        using var listener = new System.Diagnostics.Metrics.MeterListener
        {
            InstrumentPublished = (i, _) => { if (i.Meter.Name == Orchestrator.Coordinator.Metrics.CoordinatorMetrics.MeterName) lock (names) names.Add(i.Name); },
        };
        listener.Start();
        using var metrics = new Orchestrator.Coordinator.Metrics.CoordinatorMetrics(new Orchestrator.Coordinator.Scheduling.PendingReasons());
        return names;
    });

    private static Dictionary<string, IDictionary<string, string>> PodLabels(Render render) =>
        render.Of<V1Deployment>().Select(d => d.Spec.Template.Metadata.Labels)
            .Concat(render.Of<V1StatefulSet>().Select(s => s.Spec.Template.Metadata.Labels))
            .ToDictionary(l => l["app.kubernetes.io/component"]);

    private static Dictionary<string, int> ContainerPorts(Render render, string component) =>
        (component == "redis" ? render.Of<V1StatefulSet>().Single().Spec.Template.Spec : render.Deployment(component).Spec.Template.Spec)
            .Containers.SelectMany(c => c.Ports ?? []).ToDictionary(p => p.Name, p => p.ContainerPort);

    private static void AssertSelectsOnly(IDictionary<string, string>? selector, string component, Dictionary<string, IDictionary<string, string>> pods, string what)
    {
        Assert.True(pods.ContainsKey(component), $"{what}: no {component} pods in this render");
        foreach (var (c, labels) in pods)
            Assert.True(Selects(selector, labels) == (c == component), $"{what} {(c == component ? "does not select" : "also selects")} the {c} pods");
    }

    private static bool Selects(IDictionary<string, string>? selector, IDictionary<string, string>? labels) =>
        selector is { Count: > 0 } && labels is not null && selector.All(kv => labels.TryGetValue(kv.Key, out var v) && v == kv.Value);

    private static string Flag(IList<string> args, string name)
    {
        var i = args.IndexOf(name);
        Assert.True(i >= 0 && i + 1 < args.Count, $"missing {name}");
        return args[i + 1];
    }

    [GeneratedRegex(@"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")]
    private static partial Regex VariableReference();

    [GeneratedRegex(@"\borch_[a-z0-9_]+")]
    private static partial Regex MetricName();

    [GeneratedRegex("\"ORCH_[A-Z0-9_]+\"")]
    private static partial Regex OrchLiteral();
}

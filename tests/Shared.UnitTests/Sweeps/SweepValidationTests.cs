using Orchestrator.Sweeps;

namespace Orchestrator.Shared.UnitTests.Sweeps;

/// <summary>Every rejection names the field path and the line it is on.</summary>
public class SweepValidationTests
{
    // Line 1 is the name; the case's text starts on line 2.
    private static void Rejected(string body, string field, int line, string problem, SweepLimits? limits = null)
    {
        var e = SweepYaml.Fails("name: s\n" + body, limits);
        Assert.Equal(field, e.Field);
        Assert.StartsWith($"sweep.yaml:{line}:", e.Message);
        Assert.Contains($"{field}: {problem}", e.Message);
    }

    [Theory]
    [InlineData("colour: blue\n", 2, "unknown field 'colour'")]
    [InlineData("search:\n  method: grid\n  maxTrails: 3\n", 4, "unknown field 'maxTrails'")]
    [InlineData("trial:\n  epochs: 2\n  learningRate: 0.1\n", 4, "unknown field 'learningRate'")]
    [InlineData("objective: { metric: val_accuracy, direction: up }\n", 2, "unknown field 'direction'")]
    public void Unknown_fields_are_rejected_with_their_line(string body, int line, string problem)
    {
        var e = SweepYaml.Fails("name: s\n" + body);
        Assert.StartsWith($"sweep.yaml:{line}:", e.Message);
        Assert.Contains(problem, e.Message);
    }

    [Fact]
    public void Class_weights_whose_count_is_not_the_data_sets_class_count_are_refused_at_submit() =>
        Rejected("data: { name: fashion-mnist }\ntrial:\n  loss: { classWeights: [1, 2, 3] }\n", "trial.loss.classWeights", 4,
            "3 weights given, one per class is needed: fashion-mnist has 10 classes");

    [Fact]
    public void An_unknown_field_inside_a_parameter_is_rejected_at_its_path() =>
        Rejected("parameters:\n  optimizer.lr:\n    min: 0.1\n    max: 1\n    scale: log\n", "parameters.optimizer.lr.scale", 6, "unknown field 'scale'");

    [Theory]
    [InlineData("optimizer.learningRate", "'optimizer.learningRate' is not a settable field of the trial")]
    [InlineData("data", "'data' is a section, not a single value")]
    [InlineData("loss.classWeights", "'loss.classWeights' is not a settable field")]
    [InlineData("optimizer.LR", "'optimizer.LR' is not a field of the trial: did you mean 'optimizer.lr'?")]
    public void A_parameter_path_must_be_a_settable_scalar_field_of_the_trial(string path, string problem) =>
        Rejected($"parameters:\n  {path}: {{ values: [1, 2] }}\n", $"parameters.{path}", 3, problem);

    [Theory]
    [InlineData("  optimizer.lr: { values: [0.1, -1] }\n", "parameters.optimizer.lr.values[1]", "must be > 0")]
    [InlineData("  model.name: { values: [simple-cnn, vgg16] }\n", "parameters.model.name.values[1]", "unknown model 'vgg16'")]
    [InlineData("  optimizer.lr: { min: -1, max: 0.5 }\n", "parameters.optimizer.lr.min", "must be > 0")]
    [InlineData("  model.dropout: { min: 0.1, max: 1.5 }\n", "parameters.model.dropout.max", "must be in [0, 1)")]
    [InlineData("  optimizer.name: lion\n", "parameters.optimizer.name", "unknown optimizer 'lion'")]
    [InlineData("  optimizer.momentum: { values: [0.9, 0] }\n", "parameters.optimizer.momentum.values[1]", "0 makes the trial invalid: optimizer.nesterov: Nesterov momentum needs")]
    public void A_value_that_makes_the_trial_invalid_is_rejected_at_the_parameter(string parameter, string field, string problem) =>
        Rejected("parameters:\n" + parameter, field, 3, problem);

    [Theory]
    [InlineData("{ min: 0.5, max: 0.5 }", "parameters.model.dropout.min", "min (0.5) must be below max (0.5)")]
    [InlineData("{ min: 0.4, max: 0.1 }", "parameters.model.dropout.min", "min (0.4) must be below max (0.1)")]
    [InlineData("{ min: 0, max: 0.5, distribution: log-uniform }", "parameters.model.dropout.min", "log-uniform needs min > 0")]
    [InlineData("{ min: 0, max: 0.5, step: 0 }", "parameters.model.dropout.step", "must be > 0")]
    [InlineData("{ min: 0, max: 0.5, step: -0.1 }", "parameters.model.dropout.step", "must be > 0")]
    [InlineData("{ min: 0.1, max: 0.5, distribution: log-uniform, step: 0.1 }", "parameters.model.dropout.step", "a step cannot be combined with log-uniform")]
    [InlineData("{ min: 0, max: 0.5, distribution: normal }", "parameters.model.dropout.distribution", "unknown distribution 'normal'")]
    [InlineData("{ min: 0, max: 0.5, type: string }", "parameters.model.dropout.type", "unknown type 'string'")]
    [InlineData("{ min: 0, max: 0.5, type: int }", "parameters.model.dropout.max", "0.5 is not a whole number (type: int)")]
    [InlineData("{ min: 0, max: high }", "parameters.model.dropout.max", "'high' is not a number")]
    [InlineData("{ min: 0 }", "parameters.model.dropout", "a range needs both min and max")]
    [InlineData("{ values: [0.1], min: 0 }", "parameters.model.dropout", "give either values or a range")]
    [InlineData("{ values: [] }", "parameters.model.dropout.values", "needs at least one value")]
    [InlineData("{ values: [0.1, 0.10] }", "parameters.model.dropout.values[1]", "'0.1' is listed twice")]
    [InlineData("[0.1, 0.2]", "parameters.model.dropout", "a list of choices is written {values: [0.1, 0.2]}")]
    public void A_malformed_range_or_list_is_rejected_at_its_field(string definition, string field, string problem) =>
        Rejected($"parameters:\n  model.dropout: {definition}\n", field, 3, problem);

    [Theory]
    [InlineData("batchSize: { min: 32, max: 256, step: 16.5, type: int }", "parameters.batchSize.step", "16.5 is not a whole number")]
    [InlineData("batchSize: { min: 32.5, max: 256, type: int }", "parameters.batchSize.min", "32.5 is not a whole number")]
    [InlineData("batchSize: { min: 32, max: 256, type: float }", "parameters.batchSize.type", "batchSize holds whole numbers: use type: int")]
    [InlineData("batchSize: { values: [32, 64.5] }", "parameters.batchSize.values[1]", "'64.5' is not a whole number")]
    [InlineData("optimizer.name: { min: 1, max: 2 }", "parameters.optimizer.name", "optimizer.name holds text: list its choices")]
    public void Integer_ranges_and_field_types_are_checked(string parameter, string field, string problem) =>
        Rejected($"parameters:\n  {parameter}\n", field, 3, problem);

    [Fact]
    public void Grid_search_over_a_range_without_step_is_rejected() =>
        Rejected("parameters:\n  optimizer.lr: { values: [0.1] }\n  model.dropout: { min: 0.0, max: 0.5 }\nsearch: { method: grid }\n",
                 "parameters.model.dropout", 4, "grid search needs values or a step for parameters.model.dropout");

    [Theory]
    [InlineData("search: { method: bayes }", "search.method", "unknown method 'bayes': one of grid, random, tpe")]
    [InlineData("search: { maxTrials: 0 }", "search.maxTrials", "must be ≥ 1")]
    [InlineData("search: { maxTrials: 200001 }", "search.maxTrials", "200001 is more than this coordinator allows (100000)")]
    [InlineData("search: { parallelTrials: 0 }", "search.parallelTrials", "must be ≥ 1")]
    [InlineData("search: { maxFailedTrials: -1 }", "search.maxFailedTrials", "must be ≥ 0")]
    [InlineData("objective: { metric: accuracy }", "objective.metric", "unknown metric 'accuracy': one of val_accuracy, val_loss, val_top5, train_loss, train_accuracy")]
    [InlineData("objective: { goal: maximise }", "objective.goal", "unknown goal 'maximise': one of maximize, minimize")]
    [InlineData("resources: { workers: 65 }", "resources.workers", "65 workers per trial is more than this cluster allows (64)")]
    [InlineData("resources: { workers: 0 }", "resources.workers", "must be ≥ 1")]
    [InlineData("resources: { workers: 2, minWorkers: 3 }", "resources.minWorkers", "must be ≤ resources.workers (2)")]
    [InlineData("resources: { gpusPerWorker: -1 }", "resources.gpusPerWorker", "must be ≥ 0")]
    [InlineData("resources: { aggregation: allgather }", "resources.aggregation", "unknown aggregation 'allgather': one of ring, coordinator")]
    [InlineData("resources: { wire: fp16 }", "resources.wire", "unknown wire format 'fp16': one of fp32, bf16")]
    public void Search_objective_and_resource_settings_are_checked(string body, string field, string problem) =>
        Rejected(body + "\n", field, 2, problem);

    [Fact]
    public void The_worker_ceiling_comes_from_the_limits() =>
        Rejected("resources: { workers: 9 }\n", "resources.workers", 2, "9 workers per trial is more than this cluster allows (8)", new SweepLimits(MaxWorkersPerTrial: 8));

    [Theory]
    [InlineData("trial:\n  epochs: 0\n", "trial.epochs", 3, "must be between 1 and 100000")]
    [InlineData("data: { name: svhn }\n", "data.name", 2, "unknown data set 'svhn'")]
    [InlineData("model:\n  name: vgg16\n", "model.name", 3, "unknown model 'vgg16'")]
    [InlineData("trial:\n  data: { name: mnist }\n", "trial.data", 3, "'data' goes at the top level of a sweep file")]
    public void The_fixed_trial_settings_are_validated_at_their_sweep_path(string body, string field, int line, string problem) =>
        Rejected(body, field, line, problem);

    [Theory]
    [InlineData("name: ''\n", "name", "is required")]
    [InlineData("name: my sweep\n", "name", "'my sweep' may use only letters, digits")]
    public void The_name_is_required_and_plain(string yaml, string field, string problem)
    {
        var e = SweepYaml.Fails(yaml);
        Assert.Equal(field, e.Field);
        Assert.Contains($"{field}: {problem}", e.Message);
    }
}

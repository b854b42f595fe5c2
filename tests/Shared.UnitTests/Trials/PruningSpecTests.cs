using Orchestrator.Specs;
using Orchestrator.Sweeps;
using Orchestrator.Trials;

namespace Orchestrator.Shared.UnitTests.Trials;

public class PruningSpecTests
{
    [Fact]
    public void A_pruning_section_parses_and_its_end_follows_from_the_fine_tune_epochs()
    {
        var spec = TrialSpecYaml.Parse("""
            epochs: 10
            pruning:
              sparsity: 0.9
              initialSparsity: 0.1
              startEpoch: 2
              fineTuneEpochs: 3
              frequency: 50
              scope: global
            """, "trial.yaml");
        var p = spec.Pruning!;
        Assert.Equal((0.9, 0.1, 2, 50, "global"), (p.Sparsity, p.InitialSparsity, p.StartEpoch, p.Frequency, p.Scope));
        Assert.Equal(7, p.EndEpochFor(spec.Epochs));
        // Written back (trial.yaml of a run, a checkpoint's trial) it reads the same.
        Assert.Equal(TrialSpecYaml.Serialize(spec), TrialSpecYaml.Serialize(TrialSpecYaml.Parse(TrialSpecYaml.Serialize(spec), null)));
    }

    [Theory]
    [InlineData(5, null, null, 4)]   // default: the last epoch fine-tunes
    [InlineData(1, null, null, 1)]   // a one-epoch run prunes to the end
    [InlineData(5, 3, null, 3)]
    [InlineData(5, null, 0, 5)]
    public void The_end_epoch_defaults_to_all_but_the_last_epoch(int epochs, int? endEpoch, int? fineTune, int expected) =>
        Assert.Equal(expected, new PruningSpec { Sparsity = 0.5, EndEpoch = endEpoch, FineTuneEpochs = fineTune }.EndEpochFor(epochs));

    [Fact]
    public void A_trial_without_the_section_prunes_nothing_and_writes_no_section()
    {
        var spec = TrialSpecYaml.Parse("epochs: 2\n", null);
        Assert.Null(spec.Pruning);
        Assert.DoesNotContain("pruning", TrialSpecYaml.Serialize(spec));
    }

    [Theory]
    [InlineData("sparsity: 1.0", 3, "pruning.sparsity: must be in [0, 1)")]
    [InlineData("sparsity: -0.1", 3, "pruning.sparsity: must be in [0, 1)")]
    [InlineData("sparsity: 0.5\n  initialSparsity: 0.7", 4, "pruning.initialSparsity: must be between 0 and pruning.sparsity (0.5)")]
    [InlineData("sparsity: 0.5\n  frequency: 0", 4, "pruning.frequency: must be ≥ 1")]
    [InlineData("sparsity: 0.5\n  scope: channel", 4, "pruning.scope: one of layer, global")]
    [InlineData("sparsity: 0.5\n  startEpoch: 4", 4, "pruning.startEpoch: must be ≥ 0 and less than epochs (4)")]
    [InlineData("sparsity: 0.5\n  endEpoch: 5", 4, "pruning.endEpoch: pruning would end at epoch 5, which must be after pruning.startEpoch (0) and at most epochs (4)")]
    [InlineData("sparsity: 0.5\n  startEpoch: 2\n  endEpoch: 2", 5, "pruning.endEpoch: pruning would end at epoch 2")]
    [InlineData("sparsity: 0.5\n  fineTuneEpochs: 4", 4, "pruning.fineTuneEpochs: pruning would end at epoch 0")]
    [InlineData("sparsity: 0.5\n  startEpoch: 3", 4, "pruning.startEpoch: pruning would end at epoch 3")]
    [InlineData("sparsity: 0.5\n  endEpoch: 3\n  fineTuneEpochs: 1", 4, "pruning.endEpoch: set pruning.endEpoch or pruning.fineTuneEpochs, not both")]
    [InlineData("sparsity: 0.5\n  fineTuneEpochs: -1", 4, "pruning.fineTuneEpochs: must be ≥ 0")]
    [InlineData("sparsity: 0.5\n  target: 0.8", 4, "unknown field 'target'")]
    [InlineData("sparsity: lots", 3, "'lots' is not a number")]
    public void A_bad_pruning_setting_names_the_field_and_its_line(string body, int line, string expected)
    {
        var e = Assert.Throws<SpecException>(() => TrialSpecYaml.Parse($"epochs: 4\npruning:\n  {body}\n", "trial.yaml"));
        Assert.Contains(expected, e.Message);
        Assert.StartsWith($"trial.yaml:{line}:", e.Message);
    }

    [Fact]
    public void A_sweep_can_search_over_the_sparsity_and_each_trial_gets_its_value()
    {
        var sweep = ValidatedSweep.Parse("""
            name: sparsity
            trial:
              epochs: 3
              pruning: { frequency: 10 }
            parameters:
              pruning.sparsity: { values: [0, 0.5, 0.9] }
            search: { method: grid }
            """, "sweep.yaml", SweepLimits.Default);
        Assert.Equal(["pruning.sparsity"], sweep.Space.Searched.Select(p => p.Path));
        var trial = sweep.TrialFor(new Dictionary<string, string> { ["pruning.sparsity"] = "0.9" });
        Assert.Equal((0.9, 10), (trial.Pruning!.Sparsity, trial.Pruning.Frequency));
        Assert.True(TrialFields.TryGet("pruning.fineTuneEpochs", out var field, out _));
        Assert.Equal(FieldKind.Integer, field.Kind);
    }

    [Fact]
    public void A_sweep_value_that_makes_the_pruning_impossible_is_rejected_at_submit()
    {
        var e = Assert.Throws<SpecException>(() => ValidatedSweep.Parse("""
            name: sparsity
            trial: { epochs: 3 }
            parameters:
              pruning.sparsity: { values: [0.5, 1.5] }
            search: { method: grid }
            """, "sweep.yaml", SweepLimits.Default));
        Assert.Contains("pruning.sparsity", e.Message);
    }

    [Fact]
    public void The_pruning_example_is_a_valid_trial_file()
    {
        var spec = TrialSpecYaml.Load(Path.Combine(Orchestrator.TestSupport.RepositoryRoot.Path, "examples", "fashion-mnist-pruned.yaml"));
        Assert.Equal((0.8, 1, 4), (spec.Pruning!.Sparsity, spec.Pruning.StartEpoch, spec.Pruning.EndEpochFor(spec.Epochs)));
    }
}

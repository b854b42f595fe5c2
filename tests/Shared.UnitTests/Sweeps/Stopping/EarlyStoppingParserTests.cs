using Orchestrator.Sweeps;
using Orchestrator.Sweeps.Stopping;

namespace Orchestrator.Shared.UnitTests.Sweeps.Stopping;

/// <summary>search.earlyStopping through the whole sweep file: every rejection names the field and its line.</summary>
public class EarlyStoppingParserTests
{
    /// <summary>
    /// A random sweep whose earlyStopping key is on line 10, then one field a line from line 11 (the trial
    /// part must stay two lines, the extra parameters none or one).
    /// </summary>
    private static string Yaml(string stopping, string trial = "trial:\n  epochs: 27", string parameters = "") => $"""
        name: s
        {trial}
        parameters:
          optimizer.lr: {"{"} values: [0.01, 0.1] {"}"}
          model.dropout: {"{"} min: 0.0, max: 0.5 {"}"}
        {parameters}search:
          method: random
          maxTrials: 4
          earlyStopping:
        {stopping}
        """;

    /// <summary>Fields for the block, each on its own line, indented under earlyStopping.</summary>
    private static string Block(params string[] fields) => string.Join("\n", fields.Select(f => "    " + f));

    private static void Rejected(string yaml, string field, int line, string problem)
    {
        var e = SweepYaml.Fails(yaml);
        Assert.Equal(field, e.Field);
        Assert.StartsWith($"sweep.yaml:{line}:", e.Message);
        Assert.Contains($"{field}: {problem}", e.Message);
    }

    [Fact]
    public void The_template_puts_the_block_where_the_line_numbers_say()
    {
        var lines = Yaml(Block("method: asha", "rungs: 9")).Split('\n');
        Assert.Equal("  earlyStopping:", lines[10 - 1]);
        Assert.Equal("    method: asha", lines[11 - 1]);
        Assert.Equal("    rungs: 9", lines[12 - 1]);
    }

    [Fact]
    public void A_missing_method_is_named_at_the_section()
        => Rejected(Yaml(Block("reductionFactor: 3")), "search.earlyStopping.method", 10, "is required: one of asha, hyperband, median");

    [Fact]
    public void An_unknown_method_is_named_at_its_line()
        => Rejected(Yaml(Block("method: bohb")), "search.earlyStopping.method", 11, "unknown rule 'bohb'");

    [Theory]
    // 27 epochs, min 1, η 3: rungs 1, 3, 9 fit; a fourth would be at 27.
    [InlineData("reductionFactor: 3", "rungs: 4", "4 rungs put the last at epoch 27, at or beyond the trial's epochs (27): at most 3 fit")]
    // min 2, η 2: 2, 4, 8, 16 fit below 27; a fifth would be at 32.
    [InlineData("minEpochs: 2", "reductionFactor: 2\n    rungs: 5", "5 rungs put the last at epoch 32, at or beyond the trial's epochs (27): at most 4 fit")]
    public void Rungs_beyond_the_trials_epochs_are_rejected(string first, string second, string problem)
        => Rejected(Yaml(Block("method: asha", first, second)), "search.earlyStopping.rungs", second.StartsWith("rungs", StringComparison.Ordinal) ? 13 : 14, problem);

    [Theory]
    [InlineData(1)]
    [InlineData(0)]
    [InlineData(-3)]
    public void A_reduction_factor_below_two_is_rejected(int eta)
        => Rejected(Yaml(Block("method: hyperband", $"reductionFactor: {eta}")), "search.earlyStopping.reductionFactor", 12,
                    $"{eta} must be ≥ 2: each rung keeps the best 1/reductionFactor of the trials");

    [Theory]
    [InlineData(27)]
    [InlineData(30)]
    public void Min_epochs_at_or_beyond_the_trials_epochs_are_rejected(int minEpochs)
        => Rejected(Yaml(Block("method: asha", $"minEpochs: {minEpochs}")), "search.earlyStopping.minEpochs", 12,
                    $"{minEpochs} leaves no rung: the first rung must come before the last epoch (27)");

    [Fact]
    public void Min_epochs_below_one_are_rejected()
        => Rejected(Yaml(Block("method: asha", "minEpochs: 0")), "search.earlyStopping.minEpochs", 12, "must be ≥ 1");

    [Theory]
    [InlineData("asha", "graceEpochs: 2", "search.earlyStopping.graceEpochs", "applies to the median rule")]
    [InlineData("hyperband", "minTrials: 5", "search.earlyStopping.minTrials", "applies to the median rule")]
    [InlineData("median", "reductionFactor: 3", "search.earlyStopping.reductionFactor", "applies to asha and hyperband, not to the median rule")]
    [InlineData("median", "minEpochs: 1", "search.earlyStopping.minEpochs", "applies to asha and hyperband, not to the median rule")]
    [InlineData("median", "rungs: 2", "search.earlyStopping.rungs", "applies to asha and hyperband, not to the median rule")]
    [InlineData("median", "brackets: 2", "search.earlyStopping.brackets", "applies to asha and hyperband, not to the median rule")]
    [InlineData("asha", "brackets: 2", "search.earlyStopping.brackets", "applies to hyperband (asha is one bracket)")]
    public void A_field_of_another_rule_is_rejected(string method, string field, string path, string problem)
        => Rejected(Yaml(Block($"method: {method}", field)), path, 12, problem);

    [Fact]
    public void More_brackets_than_rungs_plus_one_are_rejected()
    {
        // 27 epochs: rungs 1, 3, 9 → at most 4 brackets.
        Rejected(Yaml(Block("method: hyperband", "brackets: 5")), "search.earlyStopping.brackets", 12,
                 "5 is more than the rungs allow: bracket b starts at rung b, so at most 4 (the last one stopping nothing)");
        // With rungs: 1 written, at most 2.
        Rejected(Yaml(Block("method: hyperband", "rungs: 1", "brackets: 3")), "search.earlyStopping.brackets", 13,
                 "3 is more than the rungs allow: bracket b starts at rung b, so at most 2");
        // Four is allowed: the last bracket has no rung.
        var settings = SweepYaml.Parse(Yaml(Block("method: hyperband", "brackets: 4"))).EarlyStopping!;
        Assert.Equal(4, settings.Brackets);
        Assert.Equal([[1, 3, 9], [3, 9], [9], []], settings.BracketMilestones());
    }

    [Fact]
    public void Searched_epochs_cannot_be_combined_with_early_stopping()
    {
        var yaml = Yaml(Block("method: asha"), trial: "trial:\n  batchSize: 64", parameters: "  epochs: { min: 1, max: 20 }\n");
        // parameters.epochs is on line 7.
        Rejected(yaml, "parameters.epochs", 7, "cannot be searched with search.earlyStopping");
        // A fixed value is one number for every trial: fine.
        var fixedEpochs = Yaml(Block("method: asha"), trial: "trial:\n  batchSize: 64", parameters: "  epochs: 9\n");
        var settings = SweepYaml.Parse(fixedEpochs).EarlyStopping!;
        Assert.Equal(9, settings.MaxEpochs);
        Assert.Equal(2, settings.Rungs);   // 1, 3 (9 is the last epoch)
    }

    [Fact]
    public void Max_epochs_must_agree_with_written_trial_epochs()
    {
        Rejected(Yaml(Block("method: asha", "maxEpochs: 30")), "search.earlyStopping.maxEpochs", 12,
                 "30 differs from the trial's epochs (27): give one of them");
        Rejected(Yaml(Block("method: median", "maxEpochs: 0"), trial: "trial:\n  batchSize: 64"), "search.earlyStopping.maxEpochs", 12, "must be ≥ 1");
        // The same number twice is fine.
        Assert.Equal(27, SweepYaml.Parse(Yaml(Block("method: asha", "maxEpochs: 27"))).EarlyStopping!.MaxEpochs);
    }

    [Fact]
    public void Max_epochs_alone_sets_the_trials_epochs()
    {
        var sweep = SweepYaml.Parse(Yaml(Block("method: asha", "maxEpochs: 10"), trial: "trial:\n  batchSize: 64"));
        Assert.Equal(10, sweep.BaseTrial.Epochs);
        Assert.Equal(10, sweep.EarlyStopping!.MaxEpochs);
        Assert.Equal(3, sweep.EarlyStopping.Rungs);   // 1, 3, 9 below 10
    }

    [Theory]
    [InlineData("graceEpochs: 0", "search.earlyStopping.graceEpochs", "must be ≥ 1")]
    [InlineData("graceEpochs: 27", "search.earlyStopping.graceEpochs", "27 leaves no epoch to stop at: it must be below the trial's epochs (27)")]
    [InlineData("minTrials: 0", "search.earlyStopping.minTrials", "must be ≥ 1")]
    public void Median_numbers_are_checked(string field, string path, string problem)
        => Rejected(Yaml(Block("method: median", field)), path, 12, problem);

    [Fact]
    public void A_valid_asha_section_has_its_defaults_filled_in()
    {
        var settings = SweepYaml.Parse(Yaml(Block("method: asha"))).EarlyStopping;
        Assert.Equal(new EarlyStoppingSettings
        {
            Method = "asha", ReductionFactor = 3, MinEpochs = 1, MaxEpochs = 27, Rungs = 3, Brackets = 1, GraceEpochs = 1, MinTrials = 3,
        }, settings);
        Assert.Equal([[1, 3, 9]], settings!.BracketMilestones());
    }

    [Fact]
    public void A_valid_hyperband_section_parses_to_its_brackets()
    {
        // 27 epochs, min 2, η 2: rungs 2, 4, 8, 16 → 4 rungs, 4 brackets by default.
        var settings = SweepYaml.Parse(Yaml(Block("method: hyperband", "reductionFactor: 2", "minEpochs: 2"))).EarlyStopping;
        Assert.Equal(new EarlyStoppingSettings
        {
            Method = "hyperband", ReductionFactor = 2, MinEpochs = 2, MaxEpochs = 27, Rungs = 4, Brackets = 4,
        }, settings);
        Assert.Equal([[2, 4, 8, 16], [4, 8, 16], [8, 16], [16]], settings!.BracketMilestones());

        // Fewer rungs and brackets than fit, as written.
        var written = SweepYaml.Parse(Yaml(Block("method: hyperband", "rungs: 2", "brackets: 1"))).EarlyStopping!;
        Assert.Equal(2, written.Rungs);
        Assert.Equal([[1, 3]], written.BracketMilestones());
    }

    [Fact]
    public void A_valid_median_section_parses_to_its_numbers()
    {
        Assert.Equal(new EarlyStoppingSettings { Method = "median", MaxEpochs = 27, GraceEpochs = 4, MinTrials = 5 },
                     SweepYaml.Parse(Yaml(Block("method: median", "graceEpochs: 4", "minTrials: 5"))).EarlyStopping);
        // Defaults: grace 1, three other trials.
        Assert.Equal(new EarlyStoppingSettings { Method = "median", MaxEpochs = 27, GraceEpochs = 1, MinTrials = 3 },
                     SweepYaml.Parse(Yaml(Block("method: median"))).EarlyStopping);
    }

    [Fact]
    public void Without_the_section_there_is_no_rule()
    {
        var sweep = SweepYaml.Parse(SweepYaml.Grid);
        Assert.Null(sweep.EarlyStopping);
        Assert.False(Searcher.Create(sweep).ReportsChangeState);
    }
}

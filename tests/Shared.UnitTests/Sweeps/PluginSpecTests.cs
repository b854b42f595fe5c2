using Orchestrator.Sweeps;
using Orchestrator.Trials;

namespace Orchestrator.Shared.UnitTests.Sweeps;

/// <summary>model/data sections that name a plug-in, and plug-in arguments as sweep parameters.</summary>
public class PluginSpecTests
{
    private const string Sweep = """
        name: plugin-sweep
        data: { plugin: plugins/MyModels.dll, name: csv-images, dir: data, args: { channels: 1 } }
        model:
          plugin: plugins/MyModels.dll
          name: tiny-net
          args: { hidden: 64 }
        trial: { epochs: 1 }
        parameters:
          model.args.width: { values: [8, 16] }
          model.args.depth: { min: 1, max: 4, step: 1, type: int }
          data.args.height: 28
        search: { method: grid }
        """;

    [Fact]
    public void A_plugin_model_and_data_set_are_accepted_with_names_the_built_ins_do_not_know()
    {
        var trial = SweepYaml.Parse(Sweep).BaseTrial;
        Assert.Equal(("plugins/MyModels.dll", "tiny-net"), (trial.Model.Plugin, trial.Model.Name));
        Assert.Equal(("plugins/MyModels.dll", "csv-images"), (trial.Data.Plugin, trial.Data.Name));
        Assert.Equal("64", trial.Model.Args!["hidden"]);
        // A fixed parameter lands in the args too.
        Assert.Equal("28", trial.Data.Args!["height"]);
    }

    [Fact]
    public void Plugin_arguments_are_searched_like_any_parameter_and_each_trial_gets_its_own_copy()
    {
        var sweep = SweepYaml.Parse(Sweep);
        var trials = Searcher.Create(sweep).Start().Cast<CreateTrial>().ToList();
        Assert.Equal(8, trials.Count);
        var specs = trials.Select(t => sweep.TrialFor(t.Parameters)).ToList();
        Assert.Equal(["16", "8"], specs.Select(s => s.Model.Args!["width"]).Distinct().Order(StringComparer.Ordinal));
        Assert.Equal(["1", "2", "3", "4"], specs.Select(s => s.Model.Args!["depth"]).Distinct().Order(StringComparer.Ordinal));
        Assert.All(specs, s => Assert.Equal("64", s.Model.Args!["hidden"]));
        // The base trial is untouched by the samples.
        Assert.False(sweep.BaseTrial.Model.Args!.ContainsKey("width"));
    }

    [Fact]
    public void A_trial_with_plugin_args_round_trips_through_yaml()
    {
        var sweep = SweepYaml.Parse(Sweep);
        var trial = sweep.TrialFor(new Dictionary<string, string> { ["model.args.width"] = "16", ["model.args.depth"] = "2" });
        var again = TrialSpecYaml.Parse(TrialSpecYaml.Serialize(trial), "trial.yaml");
        Assert.Equal(trial.Model.Args, again.Model.Args);
        Assert.Equal(trial.Data.Args, again.Data.Args);
        Assert.Equal(trial.Model.Plugin, again.Model.Plugin);
    }

    [Theory]
    [InlineData("model: { name: simple-cnn, args: { width: 3 } }\n", "model.args", "arguments are for a plug-in's model")]
    [InlineData("model: { plugin: x.so, name: net }\n", "model.plugin", "'x.so' is not a .NET assembly path (.dll)")]
    [InlineData("model: { plugin: ' ', name: net }\n", "model.plugin", "is empty")]
    [InlineData("model: { plugin: a.dll, name: 'my net' }\n", "model.name", "'my net' is not a plug-in export name")]
    [InlineData("data: { plugin: a.dll, name: csv, args: { 'a.b': 1 } }\n", "data.args", "'a.b' is not an argument name")]
    [InlineData("model: { plugin: a.dll, name: net }\ntrial:\n  pretrained: { path: w.pt }\n", "trial.pretrained", "transfer learning needs a built-in model")]
    [InlineData("trial:\n  metrics: [{ plugin: m.dll, name: f1 }, { plugin: n.dll, name: f1 }]\n", "trial.metrics[1].name", "val_f1 is reported already")]
    [InlineData("trial:\n  metrics: [{ plugin: m.dll, name: accuracy }]\n", "trial.metrics[0].name", "val_accuracy is reported already")]
    [InlineData("trial:\n  metrics: [{ name: f1 }]\n", "trial.metrics[0].plugin", "is empty")]
    public void Bad_plugin_fields_are_refused_with_the_field(string body, string field, string problem)
    {
        var e = SweepYaml.Fails("name: s\n" + body);
        Assert.Equal(field, e.Field);
        Assert.Contains(problem, e.Message);
    }

    [Fact]
    public void An_argument_parameter_needs_an_argument_name() =>
        Assert.Contains("'a b' is not an argument name",
            SweepYaml.Fails("name: s\nmodel: { plugin: a.dll, name: n }\nparameters:\n  'model.args.a b': { values: [1, 2] }\n").Message);

    [Fact]
    public void The_plugin_example_sweep_is_valid()
    {
        string? path = null;
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null && path is null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "examples", "plugins", "sweep.yaml"))) path = Path.Combine(dir.FullName, "examples", "plugins", "sweep.yaml");
        Assert.NotNull(path);
        var sweep = ValidatedSweep.Parse(File.ReadAllText(path), path, new SweepLimits());
        Assert.Equal("tiny-net", sweep.BaseTrial.Model.Name);
        Assert.Equal(2, Searcher.Create(sweep).Start().Count);
    }
}

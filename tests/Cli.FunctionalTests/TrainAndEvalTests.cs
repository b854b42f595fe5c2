namespace Orchestrator.Cli.FunctionalTests;

/// <summary>One real training run on a Fashion-MNIST subset, shared by the tests that read its results.</summary>
public sealed class FashionRun : IDisposable
{
    public FashionRun()
    {
        Dir = Directory.CreateTempSubdirectory("orch-cli-").FullName;
        Train = OrchProcess.Run(Dir, "train", "--dataset", "fashion-mnist", "--model", "simple-cnn", "--epochs", "1",
            "--batch-size", "64", "--limit-train", "4000", "--limit-test", "500", "--out", "run", "--json");
    }

    public string Dir { get; }
    public OrchProcess.Result Train { get; }

    public void Dispose() => Directory.Delete(Dir, recursive: true);
}

public sealed class TrainAndEvalTests(FashionRun run) : IClassFixture<FashionRun>
{
    [Fact]
    public void Train_on_fashion_mnist_learns_and_ends_with_a_json_summary()
    {
        Assert.True(run.Train.ExitCode == 0, run.Train.ToString());
        var summary = run.Train.LastJson;
        Assert.Equal("summary", summary.GetProperty("type").GetString());
        var accuracy = summary.GetProperty("test_accuracy").GetDouble();
        Assert.True(accuracy > 0.6, $"test accuracy {accuracy} after one epoch on 4000 images (chance is 0.1)");
        Assert.Equal(1, summary.GetProperty("epochs").GetInt32());
        Assert.True(summary.GetProperty("seconds").GetDouble() > 0);
        Assert.True(File.Exists(Path.Combine(run.Dir, summary.GetProperty("checkpoint").GetString()!)));
        // Every epoch is a JSON line before the summary, and also lands in metrics.jsonl.
        Assert.Contains("\"type\":\"epoch\"", run.Train.StdOut);
        Assert.Single(File.ReadAllLines(Path.Combine(run.Dir, "run", "metrics.jsonl")));
    }

    [Fact]
    public void Eval_of_the_checkpoint_reproduces_the_reported_accuracy()
    {
        var checkpoint = run.Train.LastJson.GetProperty("checkpoint").GetString()!;
        var eval = OrchProcess.Run(run.Dir, "eval", "--checkpoint", checkpoint, "--json");
        Assert.True(eval.ExitCode == 0, eval.ToString());
        var r = eval.LastJson;
        Assert.Equal(500, r.GetProperty("count").GetInt32());
        Assert.Equal(run.Train.LastJson.GetProperty("test_accuracy").GetDouble(), r.GetProperty("accuracy").GetDouble(), 6);
        Assert.Equal(10, r.GetProperty("confusion_matrix").GetArrayLength());
        Assert.Equal(10, r.GetProperty("per_class_accuracy").EnumerateObject().Count());
    }

    [Fact]
    public void Eval_prints_a_confusion_matrix_for_people()
    {
        var checkpoint = run.Train.LastJson.GetProperty("checkpoint").GetString()!;
        var eval = OrchProcess.Run(run.Dir, "eval", "--checkpoint", checkpoint);
        Assert.True(eval.ExitCode == 0, eval.ToString());
        Assert.Contains("accuracy", eval.StdOut);
        Assert.Contains("Ankle boot", eval.StdOut);
    }

    [Fact]
    public void Resume_continues_a_run_for_more_epochs()
    {
        var last = run.Train.LastJson.GetProperty("last_checkpoint").GetString()!;
        var copy = Path.Combine(run.Dir, "resume-src.ckpt");
        File.Copy(Path.Combine(run.Dir, last), copy);
        var r = OrchProcess.Run(run.Dir, "train", "--resume", copy, "--epochs", "2", "--out", "resumed", "--json");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal(2, r.LastJson.GetProperty("epochs").GetInt32());
        // Only the new epoch was trained.
        Assert.Single(File.ReadAllLines(Path.Combine(run.Dir, "resumed", "metrics.jsonl")));
    }
}

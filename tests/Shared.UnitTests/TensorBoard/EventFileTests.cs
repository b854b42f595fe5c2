using Orchestrator.TensorBoard;
using Orchestrator.TensorBoard.Protos.HParams;
using Orchestrator.TestSupport;

namespace Orchestrator.Shared.UnitTests.TensorBoard;

public sealed class EventFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("orch-tb-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Crc32c_matches_the_standard_check_value_and_the_masking_of_tensorflow()
    {
        var check = "123456789"u8;
        Assert.Equal(0xE3069283u, TensorBoardEvents.Crc32C(check));
        Assert.Equal(TensorBoardEvents.Masked(check), TfRecord.MaskedCrc32C(check));
        var random = new byte[1000];
        new Random(7).NextBytes(random);
        Assert.Equal(TensorBoardEvents.Masked(random), TfRecord.MaskedCrc32C(random));
    }

    [Fact]
    public void Written_scalars_and_hparams_read_back_with_valid_framing_and_checksums()
    {
        string path;
        using (var writer = new EventFileWriter(_dir))
        {
            path = writer.Path;
            writer.WriteSummary(0, HParamsSummaries.SessionStart(new Dictionary<string, Google.Protobuf.WellKnownTypes.Value>
            {
                ["optimizer.lr"] = HParamsSummaries.ToValue("0.01"),
                ["model.name"] = HParamsSummaries.ToValue("simple-cnn"),
                ["augment.flip"] = HParamsSummaries.ToValue("true"),
            }, DateTimeOffset.UtcNow));
            for (var epoch = 1; epoch <= 3; epoch++)
                writer.WriteScalars(epoch, [KeyValuePair.Create("val/accuracy", 0.5 + epoch / 10.0), KeyValuePair.Create("lr", double.NaN)]);
            writer.WriteSummary(3, HParamsSummaries.SessionEnd(Status.Success, DateTimeOffset.UtcNow));
        }
        Assert.StartsWith("events.out.tfevents.", Path.GetFileName(path));

        var events = TensorBoardEvents.Read(path);
        Assert.Equal(EventFileWriter.FileVersion, events[0].FileVersion);
        Assert.Equal(6, events.Count);
        var accuracy = TensorBoardEvents.Scalars(events, "val/accuracy");
        Assert.Equal([1L, 2L, 3L], accuracy.Keys);
        Assert.Equal(0.8f, accuracy[3], 5);
        Assert.Empty(TensorBoardEvents.Scalars(events, "lr")); // NaN is not logged

        var start = TensorBoardEvents.HParams(events, HParamsSummaries.SessionStartTag)!.SessionStartInfo;
        Assert.Equal(0.01, start.Hparams["optimizer.lr"].NumberValue);
        Assert.Equal("simple-cnn", start.Hparams["model.name"].StringValue);
        Assert.True(start.Hparams["augment.flip"].BoolValue);
        Assert.Equal(Status.Success, TensorBoardEvents.HParams(events, HParamsSummaries.SessionEndTag)!.SessionEndInfo.Status);
    }

    [Fact]
    public void A_damaged_record_is_reported_with_its_offset()
    {
        string path;
        using (var writer = new EventFileWriter(_dir))
        {
            path = writer.Path;
            writer.WriteScalars(1, [KeyValuePair.Create("val/loss", 1.0)]);
        }
        var bytes = File.ReadAllBytes(path);
        bytes[^6] ^= 0x40; // inside the last record's data
        using var stream = new MemoryStream(bytes);
        var e = Assert.Throws<InvalidDataException>(() => TfRecord.Read(stream, "x.tfevents").ToList());
        Assert.Contains("data checksum", e.Message);
        Assert.Contains("x.tfevents", e.Message);
        using var truncated = new MemoryStream(bytes[..^3]);
        Assert.Contains("truncated", Assert.Throws<InvalidDataException>(() => TfRecord.Read(truncated).ToList()).Message);
    }

    [Fact]
    public void The_experiment_lists_numeric_parameters_as_intervals_and_others_as_value_sets()
    {
        var sessions = new[]
        {
            new Dictionary<string, Google.Protobuf.WellKnownTypes.Value> { ["optimizer.lr"] = HParamsSummaries.ToValue("0.1"), ["optimizer.name"] = HParamsSummaries.ToValue("sgd") },
            new Dictionary<string, Google.Protobuf.WellKnownTypes.Value> { ["optimizer.lr"] = HParamsSummaries.ToValue("0.001"), ["optimizer.name"] = HParamsSummaries.ToValue("adam") },
        };
        var infos = HParamsSummaries.InfosFrom(sessions).ToDictionary(i => i.Name);
        Assert.Equal(DataType.Float64, infos["optimizer.lr"].Type);
        Assert.Equal(0.001, infos["optimizer.lr"].DomainInterval.MinValue);
        Assert.Equal(0.1, infos["optimizer.lr"].DomainInterval.MaxValue);
        Assert.Equal(DataType.String, infos["optimizer.name"].Type);
        Assert.Equal(["adam", "sgd"], infos["optimizer.name"].DomainDiscrete.Values.Select(v => v.StringValue));
    }
}

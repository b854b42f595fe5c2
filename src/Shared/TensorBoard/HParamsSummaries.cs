using System.Globalization;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Orchestrator.TensorBoard.Protos;
using Orchestrator.TensorBoard.Protos.HParams;

namespace Orchestrator.TensorBoard;

/// <summary>
/// The summaries of TensorBoard's HParams dashboard: the experiment (hyperparameters and metrics,
/// in the logdir's root run) and, per trial, a session start (its hyperparameter values) and end.
/// The trial's scalars live in the same run as its session start, so metric groups are "".
/// </summary>
public static class HParamsSummaries
{
    public const string PluginName = "hparams";
    public const string ExperimentTag = "_hparams_/experiment";
    public const string SessionStartTag = "_hparams_/session_start_info";
    public const string SessionEndTag = "_hparams_/session_end_info";

    public static Summary Experiment(string name, IEnumerable<HParamInfo> hparams, IEnumerable<MetricInfo> metrics, DateTimeOffset created)
    {
        var e = new Experiment { Name = name, TimeCreatedSecs = created.ToUnixTimeMilliseconds() / 1000.0 };
        e.HparamInfos.AddRange(hparams);
        e.MetricInfos.AddRange(metrics);
        return Wrap(ExperimentTag, new HParamsPluginData { Experiment = e });
    }

    public static Summary SessionStart(IReadOnlyDictionary<string, Value> hparams, DateTimeOffset start, string groupName = "", string modelUri = "")
    {
        var info = new SessionStartInfo { StartTimeSecs = start.ToUnixTimeMilliseconds() / 1000.0, GroupName = groupName, ModelUri = modelUri };
        foreach (var (k, v) in hparams) info.Hparams[k] = v;
        return Wrap(SessionStartTag, new HParamsPluginData { SessionStartInfo = info });
    }

    public static Summary SessionEnd(Status status, DateTimeOffset end) =>
        Wrap(SessionEndTag, new HParamsPluginData { SessionEndInfo = new SessionEndInfo { Status = status, EndTimeSecs = end.ToUnixTimeMilliseconds() / 1000.0 } });

    /// <summary>A hyperparameter's text as TensorBoard's typed value: a number, true/false, or a string.</summary>
    public static Value ToValue(string text) =>
        double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && double.IsFinite(d) ? Value.ForNumber(d)
        : bool.TryParse(text, out var b) ? Value.ForBool(b)
        : Value.ForString(text);

    /// <summary>
    /// The experiment's hyperparameter columns, from the values the sessions took: a number
    /// column spans their interval, a string or bool column lists them.
    /// </summary>
    public static IEnumerable<HParamInfo> InfosFrom(IEnumerable<IReadOnlyDictionary<string, Value>> sessions)
    {
        var byName = new SortedDictionary<string, List<Value>>(StringComparer.Ordinal);
        foreach (var s in sessions)
        {
            foreach (var (k, v) in s)
            {
                if (!byName.TryGetValue(k, out var list)) byName[k] = list = [];
                list.Add(v);
            }
        }
        foreach (var (name, values) in byName)
        {
            var info = new HParamInfo { Name = name };
            if (values.All(v => v.KindCase == Value.KindOneofCase.NumberValue))
            {
                info.Type = Protos.HParams.DataType.Float64;
                info.DomainInterval = new Interval { MinValue = values.Min(v => v.NumberValue), MaxValue = values.Max(v => v.NumberValue) };
            }
            else
            {
                var allBool = values.All(v => v.KindCase == Value.KindOneofCase.BoolValue);
                info.Type = allBool ? Protos.HParams.DataType.Bool : Protos.HParams.DataType.String;
                var distinct = values.Select(v => allBool ? v : Value.ForString(Text(v))).DistinctBy(v => v.ToString()).OrderBy(v => v.ToString(), StringComparer.Ordinal);
                info.DomainDiscrete = new ListValue();
                info.DomainDiscrete.Values.AddRange(distinct);
            }
            yield return info;
        }
    }

    /// <summary>A session value as text (a mixed column shows every value as a string).</summary>
    private static string Text(Value v) => v.KindCase switch
    {
        Value.KindOneofCase.StringValue => v.StringValue,
        Value.KindOneofCase.NumberValue => v.NumberValue.ToString("R", CultureInfo.InvariantCulture),
        Value.KindOneofCase.BoolValue => v.BoolValue ? "true" : "false",
        _ => v.ToString(),
    };

    private static Summary Wrap(string tag, HParamsPluginData data)
    {
        var value = new Summary.Types.Value
        {
            Tag = tag,
            Metadata = new SummaryMetadata
            {
                PluginData = new SummaryMetadata.Types.PluginData { PluginName = PluginName, Content = data.ToByteString() },
            },
            // TensorBoard's own writer attaches an empty float tensor; the data is all in the metadata.
            Tensor = new TensorProto { Dtype = Protos.DataType.DtFloat, TensorShape = new TensorShapeProto(), FloatVal = { 0f } },
        };
        return new Summary { Value = { value } };
    }
}

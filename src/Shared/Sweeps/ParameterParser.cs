using System.Globalization;
using Orchestrator.Specs;
using Orchestrator.Trials;

namespace Orchestrator.Sweeps;

/// <summary>Turns the <c>parameters</c> mapping of a sweep file into <see cref="SweepParameter"/>s, checking each form.</summary>
internal static class ParameterParser
{
    private static readonly string[] Keys = ["values", "min", "max", "step", "distribution", "type"];

    public static List<SweepParameter> ParseAll(Dictionary<string, object?>? parameters, SpecLocations at)
    {
        if (parameters is null) return [];
        // File order decides the grid's nesting; YAML mappings are unordered, so take it from the positions.
        return [.. parameters
            .OrderBy(kv => at["parameters." + kv.Key]?.Line ?? 0)
            .ThenBy(kv => at["parameters." + kv.Key]?.Column ?? 0)
            .Select(kv => Parse(kv.Key, kv.Value, at))];
    }

    private static SweepParameter Parse(string key, object? node, SpecLocations at)
    {
        var path = "parameters." + key;
        if (!TrialFields.TryGet(key, out var field, out var problem)) throw at.Error(path, problem);
        switch (node)
        {
            case null:
                throw at.Error(path, "needs a value, {values: [...]} or {min: …, max: …}");
            case string text:
                if (!field.TryNormalize(text, out var fixedValue, out problem)) throw at.Error(path, problem);
                return new SweepParameter(field, ParameterKind.Fixed, [fixedValue]);
            case List<object> list:
                throw at.Error(path, $"a list of choices is written {{values: [{string.Join(", ", list)}]}}");
            case Dictionary<object, object> map:
                return ParseMapping(field, path, map.ToDictionary(kv => kv.Key.ToString() ?? "", kv => (object?)kv.Value, StringComparer.Ordinal), at);
            default:
                throw at.Error(path, "expected a value, {values: [...]} or {min: …, max: …}");
        }
    }

    private static SweepParameter ParseMapping(TrialField field, string path, Dictionary<string, object?> map, SpecLocations at)
    {
        foreach (var k in map.Keys)
            if (!Keys.Contains(k)) throw at.Error($"{path}.{k}", $"unknown field '{k}': one of {string.Join(", ", Keys)}");

        if (map.TryGetValue("values", out var valuesNode))
        {
            if (map.Count > 1) throw at.Error(path, "give either values or a range (min, max, step, distribution, type), not both");
            if (valuesNode is not List<object> list) throw at.Error(path + ".values", "expected a list: values: [a, b, c]");
            if (list.Count == 0) throw at.Error(path + ".values", "needs at least one value");
            var values = new List<string>(list.Count);
            for (var i = 0; i < list.Count; i++)
            {
                var itemPath = $"{path}.values[{i.ToString(CultureInfo.InvariantCulture)}]";
                if (list[i] is not string text) throw at.Error(itemPath, "expected a single value");
                if (!field.TryNormalize(text, out var value, out var problem)) throw at.Error(itemPath, problem);
                if (values.Contains(value)) throw at.Error(itemPath, $"'{value}' is listed twice");
                values.Add(value);
            }
            return new SweepParameter(field, ParameterKind.Categorical, values);
        }

        if (field.Kind is not (FieldKind.Integer or FieldKind.Number))
            throw at.Error(path, $"{field.Path} holds {(field.Kind == FieldKind.Boolean ? "true or false" : "text")}: list its choices with values: [...]");
        if (!map.ContainsKey("min") || !map.ContainsKey("max"))
            throw at.Error(path, "a range needs both min and max (or give values: [...])");

        var type = Word(map, "type", path, at) ?? (field.Kind == FieldKind.Integer ? "int" : "float");
        if (!SweepNames.Types.Contains(type)) throw at.Error(path + ".type", $"unknown type '{type}': {KnownNames.OneOf(SweepNames.Types)}");
        if (type == "float" && field.Kind == FieldKind.Integer) throw at.Error(path + ".type", $"{field.Path} holds whole numbers: use type: int");
        var isInt = type == "int";
        var distribution = Word(map, "distribution", path, at) ?? "uniform";
        if (!SweepNames.Distributions.Contains(distribution))
            throw at.Error(path + ".distribution", $"unknown distribution '{distribution}': {KnownNames.OneOf(SweepNames.Distributions)}");
        var log = distribution == "log-uniform";

        var min = Number(map, "min", path, isInt, field, at)!.Value;
        var max = Number(map, "max", path, isInt, field, at)!.Value;
        if (min >= max) throw at.Error(path + ".min", $"min ({Text(min)}) must be below max ({Text(max)})");
        if (log && min <= 0) throw at.Error(path + ".min", $"log-uniform needs min > 0 (got {Text(min)})");
        var step = Number(map, "step", path, isInt, field: null, at);
        if (step is { } s)
        {
            if (s <= 0) throw at.Error(path + ".step", $"must be > 0 (got {Text(s)})");
            // A step is an arithmetic grid; on a log scale the intended spacing is ambiguous.
            if (log) throw at.Error(path + ".step", "a step cannot be combined with log-uniform: list the values instead");
        }
        return new SweepParameter(field, ParameterKind.Range, [], min, max, step, log, isInt);
    }

    private static string? Word(Dictionary<string, object?> map, string key, string path, SpecLocations at) =>
        map.TryGetValue(key, out var node)
            ? node as string ?? throw at.Error($"{path}.{key}", "expected a single word")
            : null;

    private static double? Number(Dictionary<string, object?> map, string key, string path, bool isInt, TrialField? field, SpecLocations at)
    {
        if (!map.TryGetValue(key, out var node)) return null;
        var where = $"{path}.{key}";
        if (node is not string text || !double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var x) || !double.IsFinite(x))
            throw at.Error(where, $"'{node}' is not a number");
        if (isInt && x != Math.Floor(x)) throw at.Error(where, $"{text} is not a whole number (type: int)");
        if (field?.Kind == FieldKind.Integer && x is < int.MinValue or > int.MaxValue)
            throw at.Error(where, $"{text} is out of range for {field.Path}");
        if (isInt && Math.Abs(x) > 1e15) throw at.Error(where, $"{text} is too large for type: int");
        return x;
    }

    private static string Text(double x) => TrialField.FormatNumber(x);
}

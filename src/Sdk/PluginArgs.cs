using System.Globalization;

namespace Orchestrator.Sdk;

/// <summary>
/// The <c>args:</c> of a <c>model:</c> or <c>data:</c> section, as text (sweeps search over them like any
/// parameter: <c>model.args.width: { values: [32, 64] }</c>). The getters parse with the invariant culture
/// and say which argument is wrong in a <see cref="FormatException"/>; the worker fails the trial with it.
/// </summary>
public sealed class PluginArgs
{
    private readonly IReadOnlyDictionary<string, string> _values;
    private readonly string _section;

    /// <summary>Wraps the arguments of section <paramref name="section"/> ("model" or "data"), for messages.</summary>
    public PluginArgs(IReadOnlyDictionary<string, string>? values, string section = "model")
    {
        _values = values ?? new Dictionary<string, string>(StringComparer.Ordinal);
        _section = section;
    }

    /// <summary>Every argument given, by name.</summary>
    public IReadOnlyDictionary<string, string> Values => _values;

    /// <summary>Whether <paramref name="name"/> was given.</summary>
    public bool Contains(string name) => _values.ContainsKey(name);

    /// <summary>The text of <paramref name="name"/>, or <paramref name="fallback"/> when it was not given.</summary>
    public string GetString(string name, string fallback) => _values.TryGetValue(name, out var v) ? v : fallback;

    /// <summary>A whole number, or <paramref name="fallback"/> when not given.</summary>
    /// <exception cref="FormatException">The value is not a whole number.</exception>
    public int GetInt(string name, int fallback)
    {
        if (!_values.TryGetValue(name, out var v)) return fallback;
        // A searched range without type: int yields "64" for whole values, which parses as an integer.
        if (int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out var i)) return i;
        if (double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && d == Math.Floor(d) && d is >= int.MinValue and <= int.MaxValue)
            return (int)d;
        throw Bad(name, v, "a whole number");
    }

    /// <summary>A number, or <paramref name="fallback"/> when not given.</summary>
    /// <exception cref="FormatException">The value is not a finite number.</exception>
    public double GetDouble(string name, double fallback)
    {
        if (!_values.TryGetValue(name, out var v)) return fallback;
        return double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && double.IsFinite(d) ? d : throw Bad(name, v, "a number");
    }

    /// <summary>true or false, or <paramref name="fallback"/> when not given.</summary>
    /// <exception cref="FormatException">The value is neither.</exception>
    public bool GetBool(string name, bool fallback)
    {
        if (!_values.TryGetValue(name, out var v)) return fallback;
        return bool.TryParse(v, out var b) ? b : throw Bad(name, v, "true or false");
    }

    private FormatException Bad(string name, string value, string what) =>
        new($"{_section}.args.{name}: '{value}' is not {what}");
}

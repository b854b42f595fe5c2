using System.Globalization;
using System.Reflection;
using Orchestrator.Trials;

namespace Orchestrator.Sweeps;

/// <summary>
/// The scalar fields of a <see cref="TrialSpec"/> that a sweep parameter may set, by dotted YAML
/// path (<c>optimizer.lr</c>, <c>batchSize</c>), and the conversion of a parameter's text to a field value.
/// </summary>
/// <remarks>
/// Built by reflection over <see cref="TrialSpec"/> so that a field added to the trial spec is
/// searchable without touching this file; lists (<c>loss.classWeights</c>) and whole sections are not.
/// </remarks>
public static class TrialFields
{
    private static readonly HashSet<string> SectionNames = new(StringComparer.Ordinal);
    private static readonly Dictionary<string, TrialField> ByPath = Build(SectionNames);

    private static readonly string[] ArgumentSections = ["model", "data"];

    /// <summary>Every settable path, in declaration order (plug-in arguments, <c>model.args.NAME</c>, come on top).</summary>
    public static IEnumerable<string> Paths => ByPath.Keys;

    /// <summary>The field at <paramref name="path"/>, or a sentence saying why there is none.</summary>
    public static bool TryGet(string path, out TrialField field, out string problem)
    {
        if (ByPath.TryGetValue(path, out field!))
        {
            problem = "";
            return true;
        }
        // model.args.X and data.args.X: a plug-in's arguments, which no reflection can list.
        foreach (var section in ArgumentSections)
        {
            if (!path.StartsWith(section + ".args.", StringComparison.Ordinal)) continue;
            var key = path[(section.Length + ".args.".Length)..];
            if (TrialSpecYaml.IsPluginName(key))
            {
                field = TrialField.Argument(path, section, key);
                problem = "";
                return true;
            }
            problem = $"'{key}' is not an argument name (letters, digits, '_', '-')";
            return false;
        }
        var hint = ByPath.Keys.FirstOrDefault(k => string.Equals(k, path, StringComparison.OrdinalIgnoreCase));
        problem = SectionNames.Contains(path)
            ? $"'{path}' is a section, not a single value: name one of its fields (e.g. {ByPath.Keys.First(k => k.StartsWith(path + ".", StringComparison.Ordinal))})"
            : hint is not null
                ? $"'{path}' is not a field of the trial: did you mean '{hint}'?"
                : $"'{path}' is not a settable field of the trial (see docs/trial-spec.md)";
        return false;
    }

    private static Dictionary<string, TrialField> Build(HashSet<string> sections)
    {
        var fields = new Dictionary<string, TrialField>(StringComparer.Ordinal);
        foreach (var top in Properties(typeof(TrialSpec)))
        {
            var name = Camel(top.Name);
            if (TrialField.KindOf(top.PropertyType) is { } kind)
            {
                fields.Add(name, new TrialField(name, null, top, kind));
                continue;
            }
            if (!top.PropertyType.IsClass || top.PropertyType == typeof(string) || top.PropertyType.IsGenericType) continue;
            sections.Add(name);
            foreach (var inner in Properties(top.PropertyType))
                if (TrialField.KindOf(inner.PropertyType) is { } innerKind)
                    fields.Add(name + "." + Camel(inner.Name), new TrialField(name + "." + Camel(inner.Name), top, inner, innerKind));
        }
        return fields;
    }

    private static IEnumerable<PropertyInfo> Properties(Type t) =>
        t.GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p is { CanRead: true, CanWrite: true });

    // The YAML naming convention is camelCase: only the first letter changes.
    private static string Camel(string name) => char.ToLowerInvariant(name[0]) + name[1..];
}

/// <summary>The type of value a trial field holds.</summary>
public enum FieldKind
{
    /// <summary>Text, such as a model or optimizer name.</summary>
    Text,
    /// <summary>A whole number.</summary>
    Integer,
    /// <summary>A floating-point number.</summary>
    Number,
    /// <summary>true or false.</summary>
    Boolean,
}

/// <summary>One settable scalar field of a <see cref="TrialSpec"/>, or one plug-in argument (<c>model.args.width</c>).</summary>
public sealed class TrialField
{
    private readonly PropertyInfo? _section;
    private readonly PropertyInfo _property;
    // For a plug-in argument: _property is the section's Args dictionary, _argument the key.
    private readonly string? _argument;

    /// <summary>A plug-in argument: text or a number (so that ranges work), kept in the section's <c>args</c>.</summary>
    internal static TrialField Argument(string path, string section, string key)
    {
        var sectionProperty = typeof(TrialSpec).GetProperty(section, BindingFlags.Public | BindingFlags.Instance | BindingFlags.IgnoreCase)!;
        return new TrialField(path, sectionProperty, sectionProperty.PropertyType.GetProperty(nameof(ModelSpec.Args))!, FieldKind.Number, key);
    }

    internal TrialField(string path, PropertyInfo? section, PropertyInfo property, FieldKind kind, string argument)
        : this(path, section, property, kind) => _argument = argument;

    internal TrialField(string path, PropertyInfo? section, PropertyInfo property, FieldKind kind)
    {
        Path = path;
        _section = section;
        _property = property;
        Kind = kind;
    }

    /// <summary>The dotted YAML path, e.g. <c>optimizer.lr</c>.</summary>
    public string Path { get; }

    /// <summary>What the field holds.</summary>
    public FieldKind Kind { get; }

    internal static FieldKind? KindOf(Type t) => (Nullable.GetUnderlyingType(t) ?? t) switch
    {
        var x when x == typeof(string) => FieldKind.Text,
        var x when x == typeof(int) => FieldKind.Integer,
        var x when x == typeof(double) => FieldKind.Number,
        var x when x == typeof(bool) => FieldKind.Boolean,
        _ => null,
    };

    /// <summary>
    /// Reads <paramref name="text"/> as a value of this field and gives its canonical form
    /// (invariant culture; <c>1.0e-5</c> becomes <c>1E-05</c>), or a sentence saying what is wrong.
    /// </summary>
    public bool TryNormalize(string? text, out string canonical, out string problem)
    {
        canonical = "";
        problem = "";
        if (text is null)
        {
            problem = "a value is required";
            return false;
        }
        if (_argument is not null)
        {
            // An argument's type is the plug-in's business: numbers get their canonical form, the rest stays as written.
            canonical = double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var n) && double.IsFinite(n) ? FormatNumber(n) : text;
            return true;
        }
        switch (Kind)
        {
            case FieldKind.Text:
                canonical = text;
                return true;
            case FieldKind.Integer when int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var i):
                canonical = i.ToString(CultureInfo.InvariantCulture);
                return true;
            case FieldKind.Integer:
                problem = $"'{text}' is not a whole number ({Path} is an integer field)";
                return false;
            case FieldKind.Number when double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && double.IsFinite(d):
                canonical = FormatNumber(d);
                return true;
            case FieldKind.Number:
                problem = $"'{text}' is not a number";
                return false;
            case FieldKind.Boolean when bool.TryParse(text, out var b):
                canonical = b ? "true" : "false";
                return true;
            default:
                problem = $"'{text}' is not true or false";
                return false;
        }
    }

    /// <summary>Sets the field of <paramref name="spec"/> from a canonical value (see <see cref="TryNormalize"/>).</summary>
    public void Set(TrialSpec spec, string canonical)
    {
        if (_argument is not null)
        {
            var owner = Target(spec, create: true)!;
            if (_property.GetValue(owner) is not Dictionary<string, string> args)
                _property.SetValue(owner, args = new Dictionary<string, string>(StringComparer.Ordinal));
            args[_argument] = canonical;
            return;
        }
        object value = Kind switch
        {
            FieldKind.Integer => int.Parse(canonical, NumberStyles.Integer, CultureInfo.InvariantCulture),
            FieldKind.Number => double.Parse(canonical, NumberStyles.Float, CultureInfo.InvariantCulture),
            FieldKind.Boolean => bool.Parse(canonical),
            _ => canonical,
        };
        _property.SetValue(Target(spec, create: true), value);
    }

    /// <summary>The field's current value in canonical form; null where it (or its section) is unset.</summary>
    public string? Get(TrialSpec spec) => Target(spec, create: false) is not { } owner ? null
        : _argument is not null
            ? (_property.GetValue(owner) as Dictionary<string, string>)?.GetValueOrDefault(_argument)
        : _property.GetValue(owner) switch
        {
            null => null,
            double d => FormatNumber(d),
            int i => i.ToString(CultureInfo.InvariantCulture),
            bool b => b ? "true" : "false",
            var o => o.ToString(),
        };

    /// <summary>Sets the field and returns what puts <paramref name="spec"/> back as it was (to try many values on one spec).</summary>
    internal Action SetTemporarily(TrialSpec spec, string canonical)
    {
        var sectionBefore = _section?.GetValue(spec);
        var owner = Target(spec, create: true)!;
        var before = _property.GetValue(owner);
        if (_argument is not null)
        {
            // Set on a copy, so that the dictionary the spec had stays untouched and comes back as it was.
            _property.SetValue(owner, before is Dictionary<string, string> d ? new Dictionary<string, string>(d, StringComparer.Ordinal) : null);
            Set(spec, canonical);
            return () => _property.SetValue(owner, before);
        }
        Set(spec, canonical);
        return () =>
        {
            _property.SetValue(owner, before);
            if (_section is not null && sectionBefore is null) _section.SetValue(spec, null);
        };
    }

    private object? Target(TrialSpec spec, bool create)
    {
        if (_section is null) return spec;
        var owner = _section.GetValue(spec);
        if (owner is null && create)
        {
            // An optional section (pretrained) comes into being when one of its fields is set.
            owner = Activator.CreateInstance(_section.PropertyType)!;
            _section.SetValue(spec, owner);
        }
        return owner;
    }

    /// <summary>The shortest text that reads back as the same double ("0.05", "1E-05").</summary>
    internal static string FormatNumber(double d) => d.ToString("R", CultureInfo.InvariantCulture);
}

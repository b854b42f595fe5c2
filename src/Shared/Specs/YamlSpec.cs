using System.Globalization;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace Orchestrator.Specs;

/// <summary>Where each field of a parsed YAML document stands, by dotted path (<c>optimizer.lr</c>, <c>parameters[2].values</c>).</summary>
public sealed class SpecLocations
{
    private readonly Dictionary<string, SpecMark> _marks = new(StringComparer.Ordinal);

    public SpecLocations(string? file) => File = file;

    public string? File { get; }

    public SpecMark? this[string path]
    {
        get
        {
            // Fall back to the nearest enclosing field that has a position.
            for (var p = path; p.Length > 0; p = Parent(p))
                if (_marks.TryGetValue(p, out var m)) return m;
            return null;
        }
    }

    /// <summary>The field written at or last before <paramref name="mark"/> (the one a value there belongs to); "" for none.</summary>
    internal string FieldAt(SpecMark mark)
    {
        var best = "";
        SpecMark? bestMark = null;
        foreach (var (path, m) in _marks)
        {
            if ((m.Line, m.Column).CompareTo((mark.Line, mark.Column)) > 0) continue;
            if (bestMark is { } b && (m.Line, m.Column).CompareTo((b.Line, b.Column)) <= 0) continue;
            best = path;
            bestMark = m;
        }
        return best;
    }

    /// <summary>Whether the file wrote <paramref name="path"/> itself (no fallback to an enclosing field).</summary>
    public bool Contains(string path) => _marks.ContainsKey(path);

    internal void Add(string path, Mark mark) => _marks[path] = new SpecMark((int)mark.Line, (int)mark.Column);

    /// <summary>An exception for <paramref name="field"/> that points at its line in the file.</summary>
    public SpecException Error(string field, string problem) => new(File, this[field], field, problem);

    private static string Parent(string path)
    {
        var cut = Math.Max(path.LastIndexOf('.'), path.LastIndexOf('['));
        return cut <= 0 ? "" : path[..cut];
    }
}

/// <summary>Reads YAML specs strictly: unknown fields, wrong types and syntax errors become a <see cref="SpecException"/> naming the line.</summary>
public static class YamlSpec
{
    private static readonly IDeserializer Deserializer = new DeserializerBuilder()
        .WithNamingConvention(CamelCaseNamingConvention.Instance)
        .WithCaseInsensitivePropertyMatching()
        .Build();

    /// <summary>The largest spec file read (characters): far above any real sweep or trial file.</summary>
    public const int MaxLength = 1 << 20;

    /// <summary>The deepest nesting of mappings and sequences a spec may have.</summary>
    public const int MaxDepth = 64;

    /// <summary>The most nodes a spec may have once its aliases are expanded.</summary>
    public const int MaxNodes = 100_000;

    /// <summary>Parses <paramref name="text"/> into <typeparamref name="T"/>, with the position of every field.</summary>
    public static (T Value, SpecLocations Locations) Parse<T>(string text, string? file) where T : new()
    {
        ArgumentNullException.ThrowIfNull(text);
        var locations = new SpecLocations(file);
        try
        {
            // Limits first, on the event stream (no recursion, nothing built): a deep nest would
            // overflow the stack of the recursive readers below, and aliases that refer to
            // aliases ("billion laughs") would grow without bound when expanded.
            var stream = new YamlStream();
            try
            {
                CheckLimits(text, file);
                stream.Load(new StringReader(text));
            }
            catch (InvalidOperationException)
            {
                // YamlDotNet's scanner throws a bare InvalidOperationException (no position) on some
                // broken flow collections, e.g. an unclosed '{'; point at where scanning stopped.
                throw new SpecException(file, LastScannedMark(text), "", "malformed YAML: an unclosed '{' or '[', or a value cut short");
            }
            catch (ArgumentException)
            {
                // Its node loader throws a bare ArgumentException ("unsupported event") on some
                // broken structures the scanner let through (found by fuzzing: fuzz/regressions/sweep).
                throw new SpecException(file, LastScannedMark(text), "", "malformed YAML: a key, value or indentation that does not fit where it stands");
            }
            if (stream.Documents.Count == 0 || stream.Documents[0].RootNode is YamlScalarNode { Value: null or "" })
                throw new SpecException(file, null, "", "the file is empty");
            if (stream.Documents[0].RootNode is not YamlMappingNode)
                throw new SpecException(file, Mark(stream.Documents[0].RootNode.Start), "", "expected a mapping of fields at the top level");
            Walk(stream.Documents[0].RootNode, "", locations);
            var value = Deserializer.Deserialize<T>(text) ?? new T();
            return (value, locations);
        }
        catch (YamlException e)
        {
            // A wrong type is found by the deserializer: name the field whose value it is.
            var at = Mark(e.Start);
            throw new SpecException(file, at, locations.FieldAt(at), Describe(e));
        }
    }

    /// <summary>Reads and parses a file; a missing, oversized or unreadable file is a <see cref="SpecException"/> too.</summary>
    public static (T Value, SpecLocations Locations) Load<T>(string path) where T : new() => Parse<T>(ReadFile(path), path);

    /// <summary>
    /// The text of a spec file, refusing what is not one before reading it: a missing file, a
    /// folder, a file larger than <see cref="MaxLength"/>.
    /// </summary>
    public static string ReadFile(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (Directory.Exists(path)) throw new SpecException($"{path}: is a folder, not a spec file");
        var info = new FileInfo(path);
        if (!info.Exists) throw new SpecException($"{path}: no such file");
        // UTF-8 takes at most 4 bytes a character: a longer file cannot fit, and is not read at all.
        var text = info.Length > MaxLength * 4L ? null : System.IO.File.ReadAllText(path);
        if (text is null || text.Length > MaxLength)
            throw new SpecException($"{path}: {info.Length.ToString("N0", CultureInfo.InvariantCulture)} bytes; a spec file is at most {MaxLength.ToString("N0", CultureInfo.InvariantCulture)} characters");
        return text;
    }

    private static void CheckLimits(string text, string? file)
    {
        if (text.Length > MaxLength)
            throw new SpecException(file, null, "", $"{text.Length.ToString("N0", CultureInfo.InvariantCulture)} characters; a spec file is at most {MaxLength.ToString("N0", CultureInfo.InvariantCulture)}");
        var parser = new Parser(new StringReader(text));
        var depth = 0;
        long nodes = 0;
        // Open collections with an anchor: the node count when they opened. Closed anchors: their expanded size.
        var open = new Stack<(string? Anchor, long NodesBefore)>();
        var sizes = new Dictionary<string, long>(StringComparer.Ordinal);
        // A parser that yields more events than the text has characters is going round in circles.
        var budget = 2L * text.Length + 16;
        while (parser.MoveNext())
        {
            if (--budget < 0)
                throw new SpecException(file, Mark(parser.Current!.Start), "", "malformed YAML: the parser cannot make sense of it from here");
            switch (parser.Current)
            {
                case YamlDotNet.Core.Events.NodeEvent { } start when start is YamlDotNet.Core.Events.MappingStart or YamlDotNet.Core.Events.SequenceStart:
                    if (++depth > MaxDepth)
                        throw new SpecException(file, Mark(start.Start), "", $"nested more than {MaxDepth} levels deep");
                    nodes++;
                    open.Push((start.Anchor.IsEmpty ? null : start.Anchor.Value, nodes));
                    break;
                case YamlDotNet.Core.Events.MappingEnd or YamlDotNet.Core.Events.SequenceEnd:
                    depth--;
                    var (anchor, before) = open.Pop();
                    if (anchor is not null) sizes[anchor] = nodes - before + 1;
                    break;
                case YamlDotNet.Core.Events.Scalar scalar:
                    nodes++;
                    if (!scalar.Anchor.IsEmpty) sizes[scalar.Anchor.Value] = 1;
                    break;
                case YamlDotNet.Core.Events.AnchorAlias alias:
                    nodes += sizes.GetValueOrDefault(alias.Value.Value, 1);
                    break;
            }
            if (nodes > MaxNodes)
                throw new SpecException(file, Mark(parser.Current!.Start), "", $"more than {MaxNodes.ToString("N0", CultureInfo.InvariantCulture)} values once its aliases are expanded");
        }
    }

    private static SpecMark Mark(Mark m) => new((int)m.Line, (int)m.Column);

    private static SpecMark? LastScannedMark(string text)
    {
        var scanner = new Scanner(new StringReader(text));
        SpecMark? last = null;
        // The scanner can repeat an error token at one place for ever (found by fuzzing:
        // fuzz/regressions/trial): stop at the first, and never read more tokens than characters.
        var budget = 2L * text.Length + 16;
        try
        {
            while (budget-- > 0 && scanner.MoveNext())
            {
                last = Mark(scanner.Current!.End);
                if (scanner.Current is YamlDotNet.Core.Tokens.Error) break;
            }
        }
        catch (Exception e) when (e is InvalidOperationException or YamlException)
        {
        }
        return last;
    }

    private static void Walk(YamlNode node, string path, SpecLocations locations)
    {
        switch (node)
        {
            case YamlMappingNode map:
                foreach (var (key, value) in map.Children)
                {
                    var name = ((key as YamlScalarNode)?.Value ?? "?");
                    var child = path.Length == 0 ? name : path + "." + name;
                    locations.Add(child, key.Start);
                    Walk(value, child, locations);
                }
                break;
            case YamlSequenceNode seq:
                for (var i = 0; i < seq.Children.Count; i++)
                {
                    var child = $"{path}[{i.ToString(CultureInfo.InvariantCulture)}]";
                    locations.Add(child, seq.Children[i].Start);
                    Walk(seq.Children[i], child, locations);
                }
                break;
        }
    }

    private static string Describe(YamlException e)
    {
        // YamlDotNet's messages carry its own type names; say it in the user's terms.
        var inner = e.InnerException;
        var msg = e.Message;
        const string notFound = "not found on type";
        if (msg.Contains("Property '", StringComparison.Ordinal) && msg.Contains(notFound, StringComparison.Ordinal))
        {
            var start = msg.IndexOf("Property '", StringComparison.Ordinal) + 10;
            var end = msg.IndexOf('\'', start);
            return $"unknown field '{msg[start..end]}'";
        }
        // A scalar where a section or a list belongs.
        var expected = (inner as YamlException)?.Message ?? msg;
        if (expected.Contains("Expected 'MappingStart'", StringComparison.Ordinal)) return "expected a section of fields ({ name: value, … }), not a single value";
        if (expected.Contains("Expected 'SequenceStart'", StringComparison.Ordinal)) return "expected a list ([a, b, …]), not a single value";
        // A list or a section where a single value belongs.
        if (msg.Contains("No node deserializer was able to deserialize the node into type", StringComparison.Ordinal))
            return "expected a single value, not a list or a section";
        switch (inner)
        {
            case FormatException f when f.Message.Contains("Boolean", StringComparison.Ordinal):
                return "expected true or false";
            case FormatException f when Quoted(f.Message) is { } value:
                return $"'{value}' is not a number";
            case FormatException f:
                return $"wrong type of value: {f.Message}";
            case OverflowException:
                return "the number is out of range";
            // A single value where a section of fields belongs ("Invalid cast from 'System.String' to '…Spec'").
            case InvalidCastException c when c.Message.Contains("from 'System.String'", StringComparison.Ordinal):
                return "expected a section of fields ({ name: value, … }), not a single value";
        }
        var cut = msg.IndexOf("): ", StringComparison.Ordinal);
        return cut >= 0 ? msg[(cut + 3)..] : msg;
    }

    /// <summary>The first single-quoted text of a .NET parse message ("The input string 'lots' was not …").</summary>
    private static string? Quoted(string message)
    {
        var start = message.IndexOf('\'');
        var end = start < 0 ? -1 : message.IndexOf('\'', start + 1);
        return end > start ? message[(start + 1)..end] : null;
    }
}

using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Orchestrator.Data;
using Orchestrator.Specs;
using Orchestrator.Trials;

namespace Orchestrator.Worker.Checkpoints;

// Reading: the checksum says the bytes are the ones written, not that what was written is a usable
// checkpoint (another program's output, a hand-edited header, a bug in an older writer). Every
// length and every header field is checked before it is used, so such a file is one
// CheckpointFormatException naming it, never an exception from deep inside a parser.
public static partial class CheckpointFile
{
    // Section names are short identifiers; more than this is not a section table.
    private const int MaxSectionNameLength = 64;
    // A side of an input image; larger is not a header this program wrote.
    private const int MaxInputSide = 1 << 16;
    private static readonly string[] RequiredSections = [ModelSection, OptimizerSection, RngSection];

    /// <summary>Reads and verifies a checkpoint: the checksum, then every length and header field, then that the sections are there.</summary>
    /// <param name="path">The file.</param>
    /// <param name="name">What errors call it, when <paramref name="path"/> is a temporary copy ("the checkpoint of sw-1-t0003"); the path otherwise.</param>
    /// <exception cref="FileNotFoundException">There is no such file.</exception>
    /// <exception cref="CheckpointFormatException">The file is not a checkpoint, is damaged, or is wrong inside.</exception>
    public static (CheckpointHeader Header, Dictionary<string, byte[]> Sections) Read(string path, string? name = null)
    {
        name ??= path;
        if (!File.Exists(path)) throw new FileNotFoundException($"{name}: no such checkpoint", path);
        var data = File.ReadAllBytes(path);
        CheckpointFormatException Bad(string problem, long? offset = null) => new(name, problem, offset);
        if (data.Length < Magic.Length + 8 + 2 + HashLength || !data.AsSpan(0, Magic.Length).SequenceEqual(Magic))
            throw Bad("not an Orchestrator checkpoint (bad magic)", 0);
        var body = data.AsSpan(0, data.Length - HashLength);
        if (!SHA256.HashData(body).AsSpan().SequenceEqual(data.AsSpan(data.Length - HashLength)))
            throw Bad("checksum mismatch: the file is truncated or corrupt", data.Length - HashLength);

        var pos = Magic.Length;
        var version = BinaryPrimitives.ReadUInt32LittleEndian(data.AsSpan(pos));
        if (version != FormatVersion) throw Bad($"unsupported checkpoint version {version} (this program reads version {FormatVersion})", pos);
        pos += 4;
        var headerLength = BinaryPrimitives.ReadUInt32LittleEndian(data.AsSpan(pos));
        if (headerLength > body.Length - pos - 4)
            throw Bad($"header length {headerLength} exceeds the file size ({data.Length} bytes)", pos);
        pos += 4;
        var header = ParseHeader(data.AsSpan(pos, (int)headerLength), Bad, pos);
        pos += (int)headerLength;

        var sections = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        while (true)
        {
            if (body.Length - pos < 2) throw Bad("the section table runs past the end of the file (no end marker)", pos);
            var nameLength = BinaryPrimitives.ReadUInt16LittleEndian(data.AsSpan(pos));
            if (nameLength == EndMarker)
            {
                pos += 2;
                break;
            }
            if (nameLength is 0 or > MaxSectionNameLength || nameLength > body.Length - pos - 2 - 8)
                throw Bad($"impossible section name length {nameLength}", pos);
            pos += 2;
            var section = QuotedText.Printable(Encoding.UTF8.GetString(data, pos, nameLength));
            pos += nameLength;
            var length = BinaryPrimitives.ReadUInt64LittleEndian(data.AsSpan(pos));
            if (length > (ulong)(body.Length - pos - 8))
                throw Bad($"section '{section}' length {length} exceeds the file size ({data.Length} bytes)", pos);
            pos += 8;
            if (!sections.TryAdd(section, data.AsSpan(pos, (int)length).ToArray()))
                throw Bad($"section '{section}' appears twice", pos);
            pos += (int)length;
        }
        if (pos != body.Length) throw Bad($"{body.Length - pos} unexpected bytes after the section table", pos);
        foreach (var required in RequiredSections)
        {
            if (!sections.ContainsKey(required))
                throw Bad($"missing the '{required}' section (it has {(sections.Count == 0 ? "none" : string.Join(", ", sections.Keys.Select(k => $"'{k}'")))})");
        }
        return (header, sections);
    }

    /// <summary>Only the header (cheap enough for listing; still verifies the checksum and the file's structure).</summary>
    /// <inheritdoc cref="Read" path="/param"/>
    /// <inheritdoc cref="Read" path="/exception"/>
    public static CheckpointHeader ReadHeader(string path, string? name = null) => Read(path, name).Header;

    /// <summary>The trial a checkpoint was trained with; settings this program cannot read are a <see cref="CheckpointFormatException"/>.</summary>
    public static TrialSpec ParseTrial(CheckpointHeader header, string name)
    {
        ArgumentNullException.ThrowIfNull(header);
        TrialSpec spec;
        try
        {
            spec = TrialSpecYaml.Parse(header.TrialYaml, null);
        }
        catch (SpecException e)
        {
            throw new CheckpointFormatException(name, $"its trial settings are invalid: {QuotedText.Printable(e.Message)}", null, e);
        }
        if (!string.Equals(spec.Model.Name, header.Model, StringComparison.Ordinal))
            throw new CheckpointFormatException(name, $"its header says model '{QuotedText.Printable(header.Model)}' but its trial says '{spec.Model.Name}'");
        return spec;
    }

    private static CheckpointHeader ParseHeader(ReadOnlySpan<byte> json, Func<string, long?, CheckpointFormatException> bad, long offset)
    {
        CheckpointHeader? header;
        try
        {
            header = JsonSerializer.Deserialize(json, CheckpointJson.Default.CheckpointHeader);
        }
        catch (JsonException e)
        {
            throw bad($"header is not valid JSON ({QuotedText.Printable(e.Message)})", offset);
        }
        if (header is null) throw bad("header is empty (JSON null)", offset);
        if (Invalid(header) is { } problem) throw bad("header " + problem, offset);
        return header;
    }

    /// <summary>What makes a header unusable, or null. Fields missing from the JSON arrive as null.</summary>
    private static string? Invalid(CheckpointHeader h)
    {
        if (string.IsNullOrWhiteSpace(h.TrialYaml)) return "lacks 'trialYaml' (the trial settings)";
        if (string.IsNullOrWhiteSpace(h.Model)) return "lacks 'model'";
        if (h.Dataset is null) return "lacks 'dataset'";
        if (h.InputShape is not [>= 1 and <= 4 and var c, >= 1 and <= MaxInputSide, >= 1 and <= MaxInputSide])
            return $"'inputShape' {Show(h.InputShape)} is not [channels (1-4), height, width]";
        if (h.Classes is null || h.Classes.Length == 0 || h.Classes.Any(string.IsNullOrEmpty)) return "lacks 'classes' (the class names)";
        if (h.Mean is null || h.Mean.Length != c) return $"'mean' {Show(h.Mean)} does not have {c} value(s), one per channel";
        if (h.Std is null || h.Std.Length != c || h.Std.Any(s => !float.IsFinite(s) || s <= 0))
            return $"'std' {Show(h.Std)} is not {c} positive value(s), one per channel";
        if (h.EpochsCompleted < 0 || h.GlobalStep < 0) return $"counts are negative (epochsCompleted {h.EpochsCompleted}, globalStep {h.GlobalStep})";
        if (h.Plateau is null) return "lacks 'plateau' (the learning-rate schedule's state)";
        if (h.History is null || h.History.Any(e => e is null)) return "lacks 'history' (the epochs' metrics)";
        return null;
    }

    private static string Show<T>(T[]? values) => values is null ? "(missing)" : "[" + string.Join(", ", values.Take(8)) + (values.Length > 8 ? ", ..." : "") + "]";
}

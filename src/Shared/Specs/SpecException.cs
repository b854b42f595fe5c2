namespace Orchestrator.Specs;

/// <summary>
/// A user's spec (a trial or sweep file, or command-line options) is invalid. The message is one
/// line that names the file, line and field where known: <c>sweep.yaml:12:5: optimizer.lr: must be &gt; 0</c>.
/// </summary>
public sealed class SpecException : Exception
{
    public SpecException() { }
    public SpecException(string message) : base(message) { }
    public SpecException(string message, Exception inner) : base(message, inner) { }

    public SpecException(string? file, SpecMark? mark, string field, string problem)
        : base(Format(file, mark, field, problem))
    {
        Field = field;
        Line = mark?.Line;
        Problem = problem;
    }

    public string? Field { get; }
    public int? Line { get; }
    /// <summary>What is wrong, without the file, line and field (to restate it for another field).</summary>
    public string? Problem { get; }

    private static string Format(string? file, SpecMark? mark, string field, string problem)
    {
        var where = (file, mark) switch
        {
            (not null, not null) => $"{file}:{mark.Value.Line}:{mark.Value.Column}: ",
            (not null, null) => $"{file}: ",
            (null, not null) => $"line {mark.Value.Line}: ",
            _ => "",
        };
        return string.IsNullOrEmpty(field) ? where + problem : $"{where}{field}: {problem}";
    }
}

/// <summary>A position in a spec file, 1-based.</summary>
public readonly record struct SpecMark(int Line, int Column);

namespace Orchestrator.Worker.Plugins;

/// <summary>
/// A plug-in could not be loaded, or its code failed: the message names the plug-in and what is wrong
/// ("plug-in ./plugins/MyModels.dll: exports no model 'wide-net' (it exports: my-net)"). A trial that
/// meets one fails with this message; retrying elsewhere cannot fix it.
/// </summary>
public sealed class PluginException : InvalidOperationException
{
    /// <summary>An exception whose message is "plug-in {plugin}: {problem}".</summary>
    public PluginException(string plugin, string problem, Exception? inner = null)
        : base($"plug-in {plugin}: {problem}", inner)
    {
        Plugin = plugin;
        Problem = problem;
    }

    /// <summary>Creates an exception with a message of its own.</summary>
    public PluginException() : this("?", "failed") { }

    /// <summary>Creates an exception with a message of its own.</summary>
    public PluginException(string message) : base(message) { Plugin = "?"; Problem = message; }

    /// <summary>Creates an exception with a message of its own.</summary>
    public PluginException(string message, Exception inner) : base(message, inner) { Plugin = "?"; Problem = message; }

    /// <summary>The plug-in as the spec names it.</summary>
    public string Plugin { get; }

    /// <summary>What went wrong, without the plug-in's name.</summary>
    public string Problem { get; }

    /// <summary>
    /// Wraps an exception thrown by the plug-in's own code: its type and message, which is what
    /// the user needs (a stack trace into the worker is not).
    /// </summary>
    internal static PluginException Failed(string plugin, string what, Exception e)
    {
        if (e is PluginException p) return p;
        if (e is System.Reflection.TargetInvocationException { InnerException: { } inner }) e = inner;
        return new PluginException(plugin, $"{what} threw {e.GetType().Name}: {e.Message}", e);
    }
}

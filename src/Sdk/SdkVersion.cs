namespace Orchestrator.Sdk;

/// <summary>
/// The version of the plug-in contract. A worker loads a plug-in only when the Orchestrator.Sdk
/// it was built against has the worker's <see cref="Major"/>: a new major changes an interface
/// in a way old plug-ins cannot satisfy; a new minor only adds.
/// </summary>
public static class SdkVersion
{
    /// <summary>The contract's major version; equal to the major of the assembly version (a test keeps them equal).</summary>
    public const int Major = 1;

    /// <summary>The contract's minor version.</summary>
    public const int Minor = 0;

    /// <summary>The simple name of the SDK assembly, which plug-ins reference.</summary>
    public const string AssemblyName = "Orchestrator.Sdk";
}

namespace Orchestrator.Coordinator.Security;

/// <summary>
/// What a credential may do (docs/operations.md, "Credentials and roles"). A viewer reads sweeps,
/// trials, metrics, logs and checkpoints; a user also submits and steers sweeps; a worker runs
/// trials (the worker stream, checkpoint uploads, data downloads, gradient exchange). The
/// coordinator's own token (ORCH_TOKEN) holds every role.
/// </summary>
[Flags]
public enum Roles
{
    None = 0,
    Viewer = 1,
    User = 2,
    Worker = 4,
    All = Viewer | User | Worker,
}

/// <summary>Names of roles for messages, logs and metric labels.</summary>
public static class RoleNames
{
    /// <summary>"viewer", "user", "worker", "admin" (every role), or the set joined with '+'.</summary>
    public static string Of(Roles roles) => roles switch
    {
        Roles.All => "admin",
        Roles.Viewer => "viewer",
        Roles.User or (Roles.User | Roles.Viewer) => "user",
        Roles.Worker => "worker",
        Roles.None => "none",
        _ => string.Join('+', Enum.GetValues<Roles>().Where(r => r is not (Roles.None or Roles.All) && roles.HasFlag(r)).Select(r => r.ToString().ToLowerInvariant())),
    };
}

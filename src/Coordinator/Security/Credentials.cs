using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Options;
using Orchestrator.Coordinator.Configuration;

namespace Orchestrator.Coordinator.Security;

/// <summary>
/// The bearer tokens the coordinator accepts and the roles each grants: the coordinator's token
/// (Coordinator:AuthToken, ORCH_TOKEN) every role, and the optional per-role tokens
/// (Coordinator:WorkerToken, UserToken, ViewerToken) theirs; a user token reads too. Without any
/// token configured the coordinator is open (loopback, <c>orch local</c>). Tokens are compared
/// in constant time.
/// </summary>
public sealed class Credentials(IOptions<CoordinatorOptions> options)
{
    /// <summary>No token is configured: every call is allowed.</summary>
    public bool Open => Tokens().All(t => string.IsNullOrEmpty(t.Token));

    /// <summary>
    /// The roles granted to <paramref name="authorization"/> ("Bearer &lt;token&gt;"), or null when
    /// it matches no configured token (or is missing). Every role while the coordinator is open.
    /// </summary>
    public Roles? RolesOf(string? authorization)
    {
        if (Open) return Roles.All;
        if (authorization is null) return null;
        var presented = Encoding.UTF8.GetBytes(authorization);
        Roles? granted = null;
        // Every configured token is compared, so the time taken does not tell which one matched.
        foreach (var (token, roles) in Tokens())
        {
            if (string.IsNullOrEmpty(token)) continue;
            if (CryptographicOperations.FixedTimeEquals(presented, Encoding.UTF8.GetBytes("Bearer " + token)))
                granted = (granted ?? Roles.None) | roles;
        }
        return granted;
    }

    private IEnumerable<(string? Token, Roles Roles)> Tokens()
    {
        var o = options.Value;
        yield return (o.AuthToken, Roles.All);
        yield return (o.WorkerToken, Roles.Worker);
        yield return (o.UserToken, Roles.User | Roles.Viewer);
        yield return (o.ViewerToken, Roles.Viewer);
    }
}

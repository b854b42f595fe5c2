using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Orchestrator.Configuration;

/// <summary>
/// TLS from PEM files (what a Kubernetes TLS secret mounts: <c>tls.crt</c>, <c>tls.key</c>,
/// <c>ca.crt</c>): the coordinator's certificate, the CA that clients verify it against (instead
/// of the system's roots), and workers' client certificates for mutual TLS. Every error names the
/// file and what is wrong with it.
/// </summary>
public static class TlsFiles
{
    /// <summary>A certificate (chain) and its private key from PEM files.</summary>
    /// <exception cref="InvalidDataException">A file is missing or does not hold what it should.</exception>
    public static X509Certificate2 LoadCertificate(string certificateFile, string keyFile)
    {
        Exists(certificateFile, "certificate");
        Exists(keyFile, "private key");
        try
        {
            return X509Certificate2.CreateFromPemFile(certificateFile, keyFile);
        }
        catch (CryptographicException e)
        {
            throw new InvalidDataException($"{certificateFile} with key {keyFile}: not a PEM certificate and its matching private key ({e.Message})", e);
        }
    }

    /// <summary>The CA certificates of a PEM file (one or more).</summary>
    /// <exception cref="InvalidDataException">The file is missing or holds no certificate.</exception>
    public static X509Certificate2Collection LoadAuthorities(string caFile)
    {
        Exists(caFile, "CA certificate");
        var roots = new X509Certificate2Collection();
        try
        {
            roots.ImportFromPemFile(caFile);
        }
        catch (CryptographicException e)
        {
            throw new InvalidDataException($"{caFile}: not a PEM certificate file ({e.Message})", e);
        }
        if (roots.Count == 0) throw new InvalidDataException($"{caFile}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
        return roots;
    }

    /// <summary>Whether <paramref name="certificate"/> chains to one of <paramref name="roots"/> (and only to them), with <paramref name="presented"/>'s intermediates.</summary>
    public static bool ChainsTo(X509Certificate2 certificate, X509Certificate2Collection roots, X509Chain? presented = null)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(roots);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        if (presented is not null)
            foreach (var element in presented.ChainElements.Skip(1)) chain.ChainPolicy.ExtraStore.Add(element.Certificate);
        return chain.Build(certificate);
    }

    /// <summary>
    /// A validation callback that accepts a peer's certificate only when it chains to
    /// <paramref name="roots"/> (instead of the system's roots) and is otherwise valid (name, dates).
    /// </summary>
    public static RemoteCertificateValidationCallback AcceptsOnly(X509Certificate2Collection roots) =>
        (_, certificate, chain, errors) =>
            certificate is X509Certificate2 peer
            && (errors & ~SslPolicyErrors.RemoteCertificateChainErrors) == SslPolicyErrors.None
            && ChainsTo(peer, roots, chain);

    /// <summary>
    /// A client's TLS settings: the server's certificate is checked against
    /// <paramref name="caFile"/> when given (else the system's roots), and
    /// <paramref name="clientCertificateFile"/> with <paramref name="clientKeyFile"/> is presented
    /// for mutual TLS when given. Null when nothing is set (the system's roots, no client certificate).
    /// Used for gRPC channels (<see cref="ClientHandler"/>) and for the gradient socket's TLS.
    /// </summary>
    /// <exception cref="InvalidDataException">A file is missing, unreadable, or a certificate comes without its key.</exception>
    public static SslClientAuthenticationOptions? ClientAuthentication(string? caFile, string? clientCertificateFile, string? clientKeyFile)
    {
        if (string.IsNullOrEmpty(caFile) && string.IsNullOrEmpty(clientCertificateFile)) return null;
        if (string.IsNullOrEmpty(clientCertificateFile) != string.IsNullOrEmpty(clientKeyFile))
            throw new InvalidDataException("a client certificate needs its private key, and a key its certificate: give both files");
        var ssl = new SslClientAuthenticationOptions();
        if (!string.IsNullOrEmpty(caFile)) ssl.RemoteCertificateValidationCallback = AcceptsOnly(LoadAuthorities(caFile));
        if (!string.IsNullOrEmpty(clientCertificateFile))
            ssl.ClientCertificates = [LoadCertificate(clientCertificateFile, clientKeyFile!)];
        return ssl;
    }

    /// <summary>
    /// An HTTP handler for gRPC clients of the coordinator with <see cref="ClientAuthentication"/>'s
    /// settings. Null when nothing is set (the default handler).
    /// </summary>
    public static SocketsHttpHandler? ClientHandler(string? caFile, string? clientCertificateFile, string? clientKeyFile) =>
        ClientAuthentication(caFile, clientCertificateFile, clientKeyFile) is { } ssl
            ? new SocketsHttpHandler { SslOptions = ssl, EnableMultipleHttp2Connections = true }
            : null;

    private static void Exists(string file, string what)
    {
        if (!File.Exists(file))
            throw new InvalidDataException(Directory.Exists(file) ? $"{file}: is a folder, not a {what} file" : $"{file}: no such {what} file");
    }
}

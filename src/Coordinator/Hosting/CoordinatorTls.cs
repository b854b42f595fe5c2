using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Orchestrator.Configuration;

namespace Orchestrator.Coordinator.Hosting;

/// <summary>
/// The coordinator's TLS (docs/operations.md, "TLS"): its certificate and key from PEM files on
/// the gRPC and HTTP ports, and, with a client CA, workers' client certificates checked against
/// that CA alone (<see cref="Security.AuthInterceptor"/> then requires one of worker calls).
/// </summary>
public static class CoordinatorTls
{
    /// <summary>Kestrel's HTTPS options for <paramref name="listen"/>, or null for plain text.</summary>
    /// <exception cref="InvalidDataException">A file cannot be read as what it should hold (the message names it).</exception>
    public static HttpsConnectionAdapterOptions? Configure(ListenSettings listen)
    {
        ArgumentNullException.ThrowIfNull(listen);
        if (!listen.Tls) return null;
        var options = new HttpsConnectionAdapterOptions { ServerCertificate = TlsFiles.LoadCertificate(listen.TlsCertificate!, listen.TlsKey!) };
        if (!string.IsNullOrEmpty(listen.TlsClientCa))
        {
            var roots = TlsFiles.LoadAuthorities(listen.TlsClientCa);
            // Asked for, not required: users' calls come without one; worker calls are refused without one.
            options.ClientCertificateMode = ClientCertificateMode.AllowCertificate;
            options.ClientCertificateValidation = (certificate, chain, _) => TlsFiles.ChainsTo(certificate, roots, chain);
        }
        return options;
    }

    /// <summary>
    /// TLS of the gradient socket's TCP port, or null for plain text: the same certificate, and with a
    /// client CA a client certificate is required (only workers connect there).
    /// </summary>
    /// <exception cref="InvalidDataException">A file cannot be read as what it should hold (the message names it).</exception>
    public static SslServerAuthenticationOptions? SocketAuthentication(ListenSettings listen)
    {
        ArgumentNullException.ThrowIfNull(listen);
        if (!listen.Tls) return null;
        var options = new SslServerAuthenticationOptions { ServerCertificate = TlsFiles.LoadCertificate(listen.TlsCertificate!, listen.TlsKey!) };
        if (!string.IsNullOrEmpty(listen.TlsClientCa))
        {
            options.ClientCertificateRequired = true;
            options.RemoteCertificateValidationCallback = TlsFiles.AcceptsOnly(TlsFiles.LoadAuthorities(listen.TlsClientCa));
        }
        return options;
    }
}

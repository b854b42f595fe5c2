using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Orchestrator.TestSupport;

/// <summary>A CA, and certificates it signs, written as PEM files (name.crt, name.key).</summary>
public sealed class TestCa : IDisposable
{
    private readonly string _dir;
    private readonly RSA _key = RSA.Create(2048);
    private readonly X509Certificate2 _certificate;

    public TestCa(string dir, string name)
    {
        _dir = dir;
        var request = new CertificateRequest($"CN={name}", _key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        _certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        CaFile = Path.Combine(dir, name + "-ca.crt");
        File.WriteAllText(CaFile, _certificate.ExportCertificatePem());
    }

    public string CaFile { get; }

    /// <summary>Signs a server (127.0.0.1, localhost) or client certificate; returns its PEM files.</summary>
    public (string Certificate, string Key) Issue(string name, bool server)
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(
            [server ? new Oid("1.3.6.1.5.5.7.3.1") : new Oid("1.3.6.1.5.5.7.3.2")], false));
        if (server)
        {
            var names = new SubjectAlternativeNameBuilder();
            names.AddIpAddress(System.Net.IPAddress.Loopback);
            names.AddDnsName("localhost");
            request.CertificateExtensions.Add(names.Build());
        }
        using var issued = request.Create(_certificate, DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(20), RandomNumberGenerator.GetBytes(8));
        var certificate = Path.Combine(_dir, name + ".crt");
        var keyFile = Path.Combine(_dir, name + ".key");
        File.WriteAllText(certificate, issued.ExportCertificatePem());
        File.WriteAllText(keyFile, key.ExportPkcs8PrivateKeyPem());
        return (certificate, keyFile);
    }

    public void Dispose()
    {
        _certificate.Dispose();
        _key.Dispose();
    }
}

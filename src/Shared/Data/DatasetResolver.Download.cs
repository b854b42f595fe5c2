using System.Buffers;
using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;

namespace Orchestrator.Data;

// Downloading a data set file into the cache (checked, then renamed into place) and unpacking archives.
public sealed partial class DatasetResolver
{
    /// <summary>Downloads <paramref name="file"/> into <paramref name="cacheDir"/>: to a temporary file, MD5-checked, then renamed (or unpacked).</summary>
    private async Task DownloadAsync(DatasetFile file, Uri uri, string cacheDir, IProgress<DownloadProgress>? progress, CancellationToken ct)
    {
        Directory.CreateDirectory(cacheDir);
        var temp = Path.Combine(cacheDir, $".{Path.GetFileName(uri.LocalPath)}.{Guid.NewGuid():N}.part");
        var buffer = ArrayPool<byte>.Shared.Rent(CopyBufferSize);
        using var stall = CancellationTokenSource.CreateLinkedTokenSource(ct);
        try
        {
            string actual;
            stall.CancelAfter(_stallTimeout);
            using (var response = await _http.GetAsync(uri, HttpCompletionOption.ResponseHeadersRead, stall.Token).ConfigureAwait(false))
            {
                if (!response.IsSuccessStatusCode)
                    throw new DownloadFailedException($"{uri} answered {(int)response.StatusCode} {response.ReasonPhrase}");
                var total = response.Content.Headers.ContentLength;
#pragma warning disable CA5351 // The catalog's checksums are the publishers' MD5s; they guard against corruption, not attackers.
                using var md5 = IncrementalHash.CreateHash(HashAlgorithmName.MD5);
#pragma warning restore CA5351
                var body = await response.Content.ReadAsStreamAsync(stall.Token).ConfigureAwait(false);
                await using (body.ConfigureAwait(false))
                {
                    var output = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, CopyBufferSize, useAsync: true);
                    await using (output.ConfigureAwait(false))
                    {
                        long bytes = 0, reported = 0;
                        progress?.Report(new DownloadProgress(file.Name, 0, total));
                        while (true)
                        {
                            // Re-arming the timer before each read turns it into "no data for this long".
                            stall.CancelAfter(_stallTimeout);
                            var n = await body.ReadAsync(buffer.AsMemory(0, CopyBufferSize), stall.Token).ConfigureAwait(false);
                            if (n == 0) break;
                            md5.AppendData(buffer, 0, n);
                            await output.WriteAsync(buffer.AsMemory(0, n), ct).ConfigureAwait(false);
                            bytes += n;
                            if (bytes - reported >= ProgressStep)
                            {
                                progress?.Report(new DownloadProgress(file.Name, bytes, total));
                                reported = bytes;
                            }
                        }
                        if (total is { } expectedLength && bytes != expectedLength)
                            throw new DownloadFailedException($"{uri} ended after {bytes} of {expectedLength} bytes");
                        if (reported != bytes) progress?.Report(new DownloadProgress(file.Name, bytes, total));
                    }
                }
                actual = Convert.ToHexStringLower(md5.GetHashAndReset());
            }

            if (file.Md5 is { } expected && !string.Equals(expected, actual, StringComparison.OrdinalIgnoreCase))
                throw new DownloadFailedException($"{uri}: MD5 mismatch, expected {expected.ToLowerInvariant()} but the download has {actual}; the file was deleted");

            if (file.IsArchive)
                await UnpackAsync(temp, cacheDir, file.Name, uri, ct).ConfigureAwait(false);
            else
                File.Move(temp, Path.Combine(cacheDir, file.Name), overwrite: true);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new DownloadFailedException($"{uri}: no data for {_stallTimeout.TotalSeconds:0} s, gave up");
        }
        catch (HttpRequestException ex)
        {
            throw new DownloadFailedException($"{uri}: {ex.Message}", ex);
        }
        catch (IOException ex)
        {
            throw new DownloadFailedException($"{uri}: {ex.Message}", ex);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
            TryDelete(temp);
        }
    }

    /// <summary>Unpacks a .tar.gz into a temporary folder, then moves its <paramref name="folder"/> into place.</summary>
    private static async Task UnpackAsync(string archive, string cacheDir, string folder, Uri uri, CancellationToken ct)
    {
        var scratch = Path.Combine(cacheDir, $".unpack-{Guid.NewGuid():N}");
        Directory.CreateDirectory(scratch);
        try
        {
            var file = File.OpenRead(archive);
            await using (file.ConfigureAwait(false))
            {
                var gzip = new GZipStream(file, CompressionMode.Decompress);
                await using (gzip.ConfigureAwait(false))
                {
                    // ExtractToDirectory refuses entries that would land outside `scratch`.
                    await TarFile.ExtractToDirectoryAsync(gzip, scratch, overwriteFiles: false, ct).ConfigureAwait(false);
                }
            }
            var unpacked = Path.Combine(scratch, folder);
            if (!Directory.Exists(unpacked))
                throw new DownloadFailedException($"{uri}: the archive has no folder {folder}");
            var target = Path.Combine(cacheDir, folder);
            // Another process may have unpacked the same archive meanwhile; its copy is as good.
            if (!Directory.Exists(target)) Directory.Move(unpacked, target);
        }
        catch (InvalidDataException ex)
        {
            throw new DownloadFailedException($"{uri}: not a valid .tar.gz archive: {ex.Message}", ex);
        }
        finally
        {
            try
            {
                Directory.Delete(scratch, recursive: true);
            }
            catch (IOException)
            {
                // Leftover scratch folders are hidden and harmless; never mask the real outcome.
            }
        }
    }
}

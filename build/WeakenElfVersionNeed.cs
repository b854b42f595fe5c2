// MSBuild inline task (see TorchSharp.Debian.targets): marks one GNU version need of an
// ELF64 little-endian shared library as weak, when the system libstdc++ lacks that version
// (or always, for output that runs on another system's libstdc++, such as a container image).
using System;
using System.IO;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

public class WeakenElfVersionNeed : Task
{
    private const uint ShtGnuVerneed = 0x6ffffffe;
    private const ushort VerFlgWeak = 0x2;

    private static readonly string[] LibStdCxxCandidates =
    {
        "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
        "/lib/x86_64-linux-gnu/libstdc++.so.6",
        "/usr/lib64/libstdc++.so.6",
        "/usr/lib/libstdc++.so.6",
        "/usr/lib/aarch64-linux-gnu/libstdc++.so.6",
    };

    [Required] public ITaskItem[] Files { get; set; } = Array.Empty<ITaskItem>();
    [Required] public string VersionName { get; set; } = "";
    /// <summary>Patch even when this machine's libstdc++ has the version: the output runs elsewhere (a container image).</summary>
    public bool Always { get; set; }

    public override bool Execute()
    {
        if (!Always && SystemProvides(VersionName))
        {
            Log.LogMessage(MessageImportance.Low, "System libstdc++ provides {0}; no patch needed.", VersionName);
            return true;
        }
        foreach (var item in Files)
        {
            var path = item.GetMetadata("FullPath");
            try
            {
                var bytes = File.ReadAllBytes(path);
                switch (Weaken(bytes, VersionName))
                {
                    case Result.Patched:
                        // Write a new file and move it over the old one: the output copy may be a
                        // hard link into the NuGet cache, which must stay untouched.
                        var tmp = path + ".weak.tmp";
                        File.WriteAllBytes(tmp, bytes);
                        File.Delete(path);
                        File.Move(tmp, path);
                        Log.LogMessage(MessageImportance.Normal, "Marked {0} weak in {1}", VersionName, path);
                        break;
                    case Result.AlreadyWeak:
                        break;
                    case Result.NotFound:
                        Log.LogMessage(MessageImportance.Low, "{0} does not need {1}", path, VersionName);
                        break;
                }
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException || e is InvalidDataException)
            {
                Log.LogError("Could not patch {0}: {1}", path, e.Message);
            }
        }
        return !Log.HasLoggedErrors;
    }

    private static bool SystemProvides(string version)
    {
        var needle = Encoding.ASCII.GetBytes(version + "\0");
        foreach (var candidate in LibStdCxxCandidates)
        {
            if (!File.Exists(candidate)) continue;
            var data = File.ReadAllBytes(candidate);
            return Contains(data, needle);
        }
        return false; // no system libstdc++ found: patching is harmless
    }

    private static bool Contains(byte[] haystack, byte[] needle)
    {
        for (var i = 0; i <= haystack.Length - needle.Length; i++)
        {
            if (haystack[i] != needle[0]) continue;
            var j = 1;
            while (j < needle.Length && haystack[i + j] == needle[j]) j++;
            if (j == needle.Length) return true;
        }
        return false;
    }

    private enum Result { NotFound, AlreadyWeak, Patched }

    private static Result Weaken(byte[] elf, string version)
    {
        if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
            throw new InvalidDataException("not an ELF file");
        if (elf[4] != 2 || elf[5] != 1)
            throw new InvalidDataException("only 64-bit little-endian ELF is supported");
        var shoff = (long)BitConverter.ToUInt64(elf, 0x28);
        var shentsize = BitConverter.ToUInt16(elf, 0x3A);
        var shnum = BitConverter.ToUInt16(elf, 0x3C);
        for (var i = 0; i < shnum; i++)
        {
            var sh = checked((int)(shoff + (long)i * shentsize));
            if (BitConverter.ToUInt32(elf, sh + 4) != ShtGnuVerneed) continue;
            var offset = checked((int)BitConverter.ToUInt64(elf, sh + 24));
            var link = BitConverter.ToUInt32(elf, sh + 40);
            var count = BitConverter.ToUInt32(elf, sh + 44);
            var strtab = checked((int)BitConverter.ToUInt64(elf, checked((int)(shoff + (long)link * shentsize)) + 24));
            var vn = offset;
            for (var n = 0; n < count; n++)
            {
                var cnt = BitConverter.ToUInt16(elf, vn + 2);
                var aux = vn + (int)BitConverter.ToUInt32(elf, vn + 8);
                for (var a = 0; a < cnt; a++)
                {
                    var nameOffset = strtab + (int)BitConverter.ToUInt32(elf, aux + 8);
                    var end = Array.IndexOf(elf, (byte)0, nameOffset);
                    var name = Encoding.ASCII.GetString(elf, nameOffset, end - nameOffset);
                    if (name == version)
                    {
                        var flags = BitConverter.ToUInt16(elf, aux + 4);
                        if ((flags & VerFlgWeak) != 0) return Result.AlreadyWeak;
                        flags |= VerFlgWeak;
                        elf[aux + 4] = (byte)(flags & 0xff);
                        elf[aux + 5] = (byte)(flags >> 8);
                        return Result.Patched;
                    }
                    aux += (int)BitConverter.ToUInt32(elf, aux + 12);
                }
                vn += (int)BitConverter.ToUInt32(elf, vn + 12);
            }
        }
        return Result.NotFound;
    }
}

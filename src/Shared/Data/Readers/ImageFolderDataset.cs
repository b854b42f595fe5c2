using SkiaSharp;

namespace Orchestrator.Data.Readers;

/// <summary>
/// An ImageNet-style data set: a root folder with one subfolder per class (the folder name is the
/// class; classes sorted ordinally), holding *.jpg, *.jpeg and *.png files (any case, nested
/// folders included). Images are decoded lazily, in <see cref="CopyImage"/>, with SkiaSharp:
/// converted to RGB, the shorter side resized to the image size, then center-cropped to a square.
/// Only the file list is held in memory, so data sets larger than RAM work; every call decodes
/// into its own buffers, so any number of threads may call <see cref="CopyImage"/> at once.
/// </summary>
public sealed class ImageFolderDataset : ICroppingImageDataset
{
    private static readonly string[] Extensions = [".jpg", ".jpeg", ".png"];

    /// <summary>
    /// The most pixels an image may declare (Pillow's decompression-bomb error threshold, 2 × 89.5 M):
    /// decoding one at this size takes about 716 MB, on each loader thread.
    /// </summary>
    public const long MaxPixels = 178_956_970;

    // Mipmapped linear sampling averages over the source footprint when shrinking, which avoids
    // the aliasing plain bilinear gives on large downscales (a 4000 px photo to 224 px).
    private static readonly SKSamplingOptions Sampling = new(SKFilterMode.Linear, SKMipmapMode.Linear);
    private static readonly SKSamplingOptions WindowSampling = new(SKFilterMode.Linear, SKMipmapMode.None);

    private readonly string[] _files;
    private readonly int[] _labels;

    /// <summary>
    /// Lists the images under <paramref name="root"/>. When <paramref name="classes"/> is given
    /// (a validation folder that must use the training classes) every subfolder must be one of
    /// them, and a class may be absent; otherwise the subfolders define the classes.
    /// </summary>
    /// <exception cref="DatasetNotFoundException">The root does not exist.</exception>
    /// <exception cref="DataFormatException">The root has no class folders, a class folder has no images, a folder is not a known
    /// class, or a symbolic link makes a loop or lists images twice (<see cref="ImageFolderListing"/>).</exception>
    public ImageFolderDataset(string root, int imageSize, IReadOnlyList<string>? classes = null, string? name = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(imageSize, 1);
        if (!Directory.Exists(root))
            throw new DatasetNotFoundException($"image folder {root} does not exist");
        Root = root;
        Name = name ?? Path.GetFileName(Path.TrimEndingDirectorySeparator(root));
        Shape = new ImageShape(3, imageSize, imageSize);

        var folders = Directory.GetDirectories(root)
            .Select(Path.GetFileName)
            .OfType<string>()
            .Where(n => !n.StartsWith('.'))
            .Order(StringComparer.Ordinal)
            .ToArray();
        if (folders.Length == 0)
            throw new DataFormatException(root, "no class subfolders: an image folder needs one subfolder of images per class");

        if (classes is null)
        {
            classes = folders;
        }
        else
        {
            var unknown = folders.Where(f => !classes.Contains(f, StringComparer.Ordinal)).ToArray();
            if (unknown.Length > 0)
                throw new DataFormatException(root, $"class folders {string.Join(", ", unknown)} are not among the training classes");
        }
        Classes = classes;

        var files = new List<string>();
        var labels = new List<int>();
        var listing = ImageFolderListing.List(root, folders, IsImage);
        for (var f = 0; f < folders.Length; f++)
        {
            var folder = folders[f];
            var label = IndexOf(classes, folder);
            var images = listing[f];
            if (images.Length == 0)
            {
                throw new DataFormatException(Path.Combine(root, folder),
                    $"class folder '{folder}' holds no images ({string.Join(", ", Extensions)})");
            }
            files.AddRange(images);
            labels.AddRange(Enumerable.Repeat(label, images.Length));
        }
        _files = [.. files];
        _labels = [.. labels];
    }

    /// <summary>The folder the images were listed from.</summary>
    public string Root { get; }

    public string Name { get; }
    public int Count => _files.Length;
    public ImageShape Shape { get; }
    public IReadOnlyList<string> Classes { get; }

    /// <summary>The file of image <paramref name="index"/>.</summary>
    public string GetPath(int index) => _files[index];

    public int GetLabel(int index) => _labels[index];

    /// <summary>
    /// Opens an image folder with the split convention: when <paramref name="root"/> has a
    /// <c>train/</c> folder and a <c>val/</c> (or else <c>test/</c>) folder, those are the splits and
    /// validation uses the training classes; otherwise the whole root is the training set and
    /// <c>Validation</c> is null (the caller holds some of it out).
    /// </summary>
    public static (ImageFolderDataset Train, ImageFolderDataset? Validation) OpenSplits(string root, int imageSize, string? name = null)
    {
        name ??= "imagefolder";
        var train = Path.Combine(root, "train");
        var validation = new[] { "val", "test" }.Select(v => Path.Combine(root, v)).FirstOrDefault(Directory.Exists);
        if (Directory.Exists(train) && validation is not null)
        {
            var trainSet = new ImageFolderDataset(train, imageSize, null, name + "/train");
            return (trainSet, new ImageFolderDataset(validation, imageSize, trainSet.Classes, name + "/" + Path.GetFileName(validation)));
        }
        return (new ImageFolderDataset(root, imageSize, null, name), null);
    }

    /// <summary>Decodes image <paramref name="index"/>, resizes and crops it, and writes it as CHW RGB bytes.</summary>
    /// <exception cref="DataFormatException">The file is not a readable JPEG or PNG image.</exception>
    public void CopyImage(int index, Span<byte> destination)
    {
        var size = Shape.Height;
        if (destination.Length < Shape.Size)
            throw new ArgumentException($"destination holds {destination.Length} bytes, an image needs {Shape.Size}", nameof(destination));
        var path = _files[index];
        using var decoded = Decode(path, size);
        using var image = SKImage.FromBitmap(decoded);

        // Resize the shorter side to `size`, then center-crop: drawn in one step by placing the
        // scaled image so that its central square lands on the target.
        var scale = (float)size / Math.Min(decoded.Width, decoded.Height);
        var width = decoded.Width * scale;
        var height = decoded.Height * scale;
        var left = (size - width) / 2;
        var top = (size - height) / 2;

        var info = new SKImageInfo(size, size, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        using var target = new SKBitmap(info);
        using (var canvas = new SKCanvas(target))
        {
            canvas.Clear(SKColors.Black);
            canvas.DrawImage(image, SKRect.Create(left, top, width, height), Sampling);
        }

        WritePlanes(target.GetPixelSpan(), destination, size * size);
    }

    /// <summary>
    /// The random-resized crop from the decoded original: the window is chosen on the image as
    /// stored (its header gives the size), the decoder downscales (JPEG: 1/2, 1/4, 1/8) as far as the
    /// window still covers <paramref name="side"/> pixels, and the window is drawn at
    /// <paramref name="side"/> × <paramref name="side"/> with mipmapped linear filtering.
    /// </summary>
    /// <exception cref="DataFormatException">The file is not a readable JPEG or PNG image.</exception>
    public void CopyRandomResizedCrop(int index, Span<byte> destination, int side, Random rng)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(side, 1);
        if (destination.Length < 3 * side * side)
            throw new ArgumentException($"destination holds {destination.Length} bytes, a {side}x{side} crop needs {3 * side * side}", nameof(destination));
        var path = _files[index];
        using var codec = OpenCodec(path);
        var full = codec.Info;
        var window = RandomResizedCrop.Sample(full.Width, full.Height, rng);
        var dims = DecodeSize(codec, window, side);
        var f = (float)dims.Width / full.Width;
        // Opaque images (every JPEG) draw on Skia's fast path; with alpha, unpremultiplied colours
        // are kept, so that dropping alpha gives what torchvision's convert("RGB") gives.
        var alpha = full.AlphaType == SKAlphaType.Opaque ? SKAlphaType.Opaque : SKAlphaType.Unpremul;
        var info = new SKImageInfo(dims.Width, dims.Height, SKColorType.Rgba8888, alpha);
        using var decoded = new SKBitmap(info);
        var result = codec.GetPixels(info, decoded.GetPixels());
        if (result != SKCodecResult.Success)
            throw new DataFormatException(path, $"image data is corrupt or incomplete (decoder: {result})");
        // Immutable, the image shares the decoded pixels instead of copying them.
        decoded.SetImmutable();
        using var image = SKImage.FromBitmap(decoded);
        using var target = new SKBitmap(new SKImageInfo(side, side, SKColorType.Rgba8888, alpha));
        using (var canvas = new SKCanvas(target))
        {
            var source = SKRect.Create(window.X * f, window.Y * f, window.Width * f, window.Height * f);
            // The decoder did most of the shrinking; mipmaps (built over the whole image) only pay
            // for a window still more than twice the output side.
            var sampling = Math.Min(source.Width, source.Height) > 2 * side ? Sampling : WindowSampling;
            canvas.DrawImage(image, source, SKRect.Create(0, 0, side, side), sampling);
        }
        WritePlanes(target.GetPixelSpan(), destination, side * side);
    }

    /// <summary>
    /// The smallest size the decoder can produce (JPEG: n/8 of the original) at which
    /// <paramref name="window"/> still covers <paramref name="side"/> pixels; the full size when none
    /// smaller does. A scale the decoder rounds below what is needed is passed over, not used.
    /// </summary>
    public static SKSizeI DecodeSize(SKCodec codec, CropWindow window, int side)
    {
        ArgumentNullException.ThrowIfNull(codec);
        var full = codec.Info;
        var shorter = Math.Min(window.Width, window.Height);
        for (var eighths = 1; eighths < 8; eighths++)
        {
            var dims = codec.GetScaledDimensions(eighths / 8f);
            if (dims.Width >= full.Width) break;
            if (shorter * ((float)dims.Width / full.Width) >= side) return dims;
        }
        return new SKSizeI(full.Width, full.Height);
    }

    /// <summary>RGBA rows to three planes; alpha is dropped, as torchvision's convert("RGB") does.</summary>
    private static void WritePlanes(ReadOnlySpan<byte> rgba, Span<byte> destination, int plane)
    {
        var r = destination[..plane];
        var g = destination.Slice(plane, plane);
        var b = destination.Slice(2 * plane, plane);
        for (var i = 0; i < plane; i++)
        {
            r[i] = rgba[4 * i];
            g[i] = rgba[4 * i + 1];
            b[i] = rgba[4 * i + 2];
        }
    }

    /// <summary>
    /// Decodes <paramref name="path"/> to RGBA, letting the codec downscale while decoding (JPEG
    /// supports n/8) as far as the result still has a shorter side of at least <paramref name="size"/>
    /// (<see cref="DecodeSize"/>, with the whole image as the window).
    /// </summary>
    private static SKBitmap Decode(string path, int size)
    {
        using var codec = OpenCodec(path);
        var full = codec.Info;
        var dims = DecodeSize(codec, new CropWindow(0, 0, full.Width, full.Height), size);

        var info = new SKImageInfo(dims.Width, dims.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        var bitmap = new SKBitmap(info);
        try
        {
            var result = codec.GetPixels(info, bitmap.GetPixels());
            if (result != SKCodecResult.Success)
                throw new DataFormatException(path, $"image data is corrupt or incomplete (decoder: {result})");
            return bitmap;
        }
        catch
        {
            bitmap.Dispose();
            throw;
        }
    }

    private static SKCodec OpenCodec(string path)
    {
        SKCodec? codec;
        try
        {
            codec = SKCodec.Create(path, out var result);
            if (codec is null)
                throw new DataFormatException(path, $"not a readable JPEG or PNG image (decoder: {result})");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new DataFormatException(path, $"cannot be read: {ex.Message}", null, ex);
        }
        if (codec.Info.Width <= 0 || codec.Info.Height <= 0)
        {
            codec.Dispose();
            throw new DataFormatException(path, "image has no pixels");
        }
        // A decompression bomb: a small file declaring a huge image, whose decode would allocate
        // width × height × 4 bytes before reading a pixel. The codec has read only the header here.
        var (width, height) = (codec.Info.Width, codec.Info.Height);
        var pixels = (long)width * height;
        if (pixels > MaxPixels)
        {
            codec.Dispose();
            throw new DataFormatException(path,
                $"declares {width}x{height} pixels ({pixels / 1e6:0.#} megapixels), more than the {MaxPixels / 1e6:0} megapixels an image may have " +
                "(a decompression bomb, or a scan to downscale before training)");
        }
        return codec;
    }

    private static bool IsImage(string path)
    {
        var ext = Path.GetExtension(path);
        foreach (var e in Extensions)
        {
            if (string.Equals(ext, e, StringComparison.OrdinalIgnoreCase)) return true;
        }
        return false;
    }

    private static int IndexOf(IReadOnlyList<string> classes, string name)
    {
        for (var i = 0; i < classes.Count; i++)
        {
            if (string.Equals(classes[i], name, StringComparison.Ordinal)) return i;
        }
        return -1;
    }
}

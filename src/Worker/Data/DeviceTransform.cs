using Orchestrator.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace Orchestrator.Worker.Data;

/// <summary>Augmentation and normalisation done on the device, batched.</summary>
/// <param name="Mean">Per-channel mean, in [0, 1] units.</param>
/// <param name="Std">Per-channel standard deviation.</param>
/// <param name="Brightness">Brightness jitter: factor drawn from [1−b, 1+b] per image.</param>
/// <param name="Contrast">Contrast jitter, likewise.</param>
/// <param name="Saturation">Saturation jitter (3-channel images only), likewise.</param>
/// <param name="RandomResizedCropSize">ImageNet-style random-resized crop to this side (scale 0.08–1, ratio 3/4–4/3).</param>
/// <param name="ResizeTo">Evaluation: resize to this side, then center crop to <paramref name="CenterCrop"/>.</param>
/// <param name="CenterCrop">Evaluation: center crop side after the resize.</param>
public sealed record DeviceAugment(
    float[] Mean,
    float[] Std,
    double Brightness = 0,
    double Contrast = 0,
    double Saturation = 0,
    int? RandomResizedCropSize = null,
    int? ResizeTo = null,
    int? CenterCrop = null,
    bool Normalize = true)
{
    public bool Jitters => Brightness > 0 || Contrast > 0 || Saturation > 0;
}

/// <summary>
/// Turns a <see cref="HostBatch"/> into a normalised float tensor on the device. The uint8 batch is
/// copied to the device first (4× fewer bytes than float), then converted and augmented there in
/// whole-batch operations. Random factors come from the batch's seed, so a resumed run replays them.
/// Call inside the caller's dispose scope.
/// </summary>
public sealed class DeviceTransform(DeviceAugment augment, Device device) : IDisposable
{
    private static readonly float[] GrayWeights = [0.299f, 0.587f, 0.114f];

    // Constants made once on the device (on first use, when the channel count is known) and kept
    // outside every dispose scope: building them per batch cost two host→device copies a step.
    private Tensor? _mean;
    private Tensor? _std;
    private Tensor? _grayWeights;

    /// <summary>Images [N, C, H, W] float32 on the device, and labels [N] int64.</summary>
    public (Tensor Images, Tensor Labels) Apply(HostBatch batch, bool train)
    {
        var s = batch.Shape;
        var n = batch.Count;
        // frombuffer wraps the pooled array without a copy; the float conversion below makes the
        // tensor that outlives this call, so the array can go back to the pool afterwards.
        using var flat = torch.frombuffer(batch.Images, ScalarType.Byte, (long)n * s.Size);
        using var hostImages = flat.view(n, s.Channels, s.Height, s.Width);
        using var hostLabels = torch.tensor(batch.Labels.AsSpan(0, n).ToArray(), [n], ScalarType.Int64);
        var labels = ToDevice(hostLabels);
        using var onDevice = ToDevice(hostImages);
        var x = onDevice.to_type(ScalarType.Float32).div_(255f);
        var rng = new Random((int)((batch.AugmentSeed >> 32) & 0x7FFFFFFF));
        if (train)
        {
            if (augment.RandomResizedCropSize is { } side) x = RandomResizedCrop(x, side, rng);
            if (augment.Jitters) x = ColorJitter(x, rng);
        }
        else if (augment.ResizeTo is { } resize)
        {
            x = ResizeShorter(x, resize);
            if (augment.CenterCrop is { } crop) x = CenterCropTo(x, crop);
        }
        else if (augment.CenterCrop is { } crop && crop < Math.Min(s.Height, s.Width))
        {
            x = CenterCropTo(x, crop);
        }
        if (augment.Normalize) x = Normalize(x);
        return (x, labels);
    }

    /// <summary>Whether host batches go to the device through pinned (page-locked) memory: on CUDA only.</summary>
    internal bool PinsHostMemory => device.type == DeviceType.CUDA;

    /// <summary>
    /// The host tensor on the device. On CUDA through a pinned staging copy, so that the transfer
    /// runs asynchronously, ordered on the stream before the kernels that read it (libtorch keeps
    /// the pinned block until the copy is done); elsewhere an ordinary move (on the CPU, none).
    /// </summary>
    private Tensor ToDevice(Tensor host)
    {
        if (!PinsHostMemory) return host.to(device);
        using var pinned = host.pin_memory();
        return pinned.to(device, non_blocking: true);
    }

    private Tensor Normalize(Tensor x)
    {
        var c = x.shape[1];
        if (_mean is null || _mean.shape[1] != c)
        {
            _mean?.Dispose();
            _std?.Dispose();
            var mean = augment.Mean.Length == c ? augment.Mean : Enumerable.Repeat(augment.Mean.Average(), (int)c).ToArray();
            var std = augment.Std.Length == c ? augment.Std : Enumerable.Repeat(augment.Std.Average(), (int)c).ToArray();
            _mean = Constant(mean, c, x.device);
            _std = Constant(std, c, x.device);
        }
        return x.sub_(_mean).div_(_std!);
    }

    private static Tensor Constant(float[] values, long channels, Device on)
    {
        using var host = torch.tensor(values, [1, channels, 1, 1]);
        return host.to(on).DetachFromDisposeScope();
    }

    private Tensor Factors(long n, double amount, Random rng, Device dev)
    {
        var f = new float[n];
        for (var i = 0; i < n; i++) f[i] = (float)(1 + amount * (2 * rng.NextDouble() - 1));
        return torch.tensor(f, [n, 1, 1, 1]).to(dev);
    }

    private Tensor ColorJitter(Tensor x, Random rng)
    {
        var n = x.shape[0];
        var c = x.shape[1];
        // Fixed order (brightness, contrast, saturation); factors are always drawn so the
        // random stream does not depend on which jitters are enabled.
        using var b = Factors(n, augment.Brightness, rng, x.device);
        using var ct = Factors(n, augment.Contrast, rng, x.device);
        using var sat = Factors(n, augment.Saturation, rng, x.device);
        if (augment.Brightness > 0) x = x.mul_(b).clamp_(0, 1);
        if (augment.Contrast > 0)
        {
            using var gray = Gray(x);
            using var mean = gray.mean([1, 2, 3], keepdim: true);
            x = x.sub_(mean).mul_(ct).add_(mean).clamp_(0, 1);
        }
        if (augment.Saturation > 0 && c == 3)
        {
            using var gray = Gray(x);
            x = x.sub_(gray).mul_(sat).add_(gray).clamp_(0, 1);
        }
        return x;
    }

    private Tensor Gray(Tensor x)
    {
        if (x.shape[1] != 3) return x.mean([1], keepdim: true);
        _grayWeights ??= Constant(GrayWeights, 3, x.device);
        return (x * _grayWeights).sum(1, keepdim: true);
    }

    public void Dispose()
    {
        _mean?.Dispose();
        _std?.Dispose();
        _grayWeights?.Dispose();
    }

    /// <summary>Per-image random crop box (area 8–100 %, aspect 3/4–4/3), resized to <paramref name="side"/>, in one grid_sample.</summary>
    private static Tensor RandomResizedCrop(Tensor x, int side, Random rng)
    {
        var n = x.shape[0];
        var theta = new float[n * 6];
        for (var i = 0; i < n; i++)
        {
            var area = 0.08 + rng.NextDouble() * 0.92;
            var logRatio = Math.Log(3.0 / 4) + rng.NextDouble() * (Math.Log(4.0 / 3) - Math.Log(3.0 / 4));
            var ratio = Math.Exp(logRatio);
            var w = Math.Min(1.0, Math.Sqrt(area * ratio));
            var h = Math.Min(1.0, Math.Sqrt(area / ratio));
            var cx = (rng.NextDouble() * 2 - 1) * (1 - w);
            var cy = (rng.NextDouble() * 2 - 1) * (1 - h);
            // affine_grid maps output coordinates in [-1, 1] to input coordinates.
            theta[i * 6 + 0] = (float)w; theta[i * 6 + 1] = 0; theta[i * 6 + 2] = (float)cx;
            theta[i * 6 + 3] = 0; theta[i * 6 + 4] = (float)h; theta[i * 6 + 5] = (float)cy;
        }
        using var t = torch.tensor(theta, [n, 2, 3]).to(x.device);
        using var grid = nn.functional.affine_grid(t, [n, x.shape[1], side, side], align_corners: false);
        return nn.functional.grid_sample(x, grid, GridSampleMode.Bilinear, GridSamplePaddingMode.Border, align_corners: false);
    }

    private static Tensor ResizeShorter(Tensor x, int side)
    {
        var h = x.shape[2];
        var w = x.shape[3];
        if (Math.Min(h, w) == side) return x;
        (long nh, long nw) = h <= w ? (side, (long)Math.Round((double)w * side / h)) : ((long)Math.Round((double)h * side / w), (long)side);
        return nn.functional.interpolate(x, [nh, nw], mode: InterpolationMode.Bilinear, align_corners: false, antialias: true);
    }

    private static Tensor CenterCropTo(Tensor x, int side)
    {
        var top = (int)(x.shape[2] - side) / 2;
        var left = (int)(x.shape[3] - side) / 2;
        return x[.., .., top..(top + side), left..(left + side)];
    }

    /// <summary>Builds the transform for a data set and a trial's augment settings.</summary>
    /// <param name="cropsOnHost">The loader cuts the random-resized crop from each original (<see cref="ICroppingImageDataset"/>): none here.</param>
    public static DeviceAugment For(DatasetInfo info, Orchestrator.Trials.AugmentSpec a, bool cropsOnHost = false) => new(
        info.Mean, info.Std, a.Brightness, a.Contrast, a.Saturation,
        a.RandomResizedCrop && !cropsOnHost ? a.CropSize ?? info.Shape.Height : null,
        a.ResizeTo, a.CropSize, a.Normalize);
}

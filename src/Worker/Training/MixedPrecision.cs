using TorchSharp;
using static TorchSharp.torch;

namespace Orchestrator.Worker.Training;

/// <summary>
/// Mixed-precision training (<c>trial.precision: bf16 | fp16</c>) without autocast, which
/// TorchSharp lacks: the trial's model stays fp32 and is the master copy (the optimizer steps it,
/// checkpoints and evaluation read it); a second instance of the same architecture, the compute
/// copy, holds its weights in bf16 or fp16 except the normalisation layers, which stay fp32
/// (libtorch runs a reduced-precision input through fp32 normalisation parameters, on the CPU and
/// with cuDNN). Each step copies the master weights into the compute copy, runs forward and
/// backward there, and hands its gradients to the master in fp32; logits, and so the loss, are
/// fp32. fp16 scales the loss dynamically (<see cref="LossScaler"/>) and skips steps whose
/// gradients overflowed. Every method runs on the training thread, inside its dispose scope.
/// </summary>
internal sealed class MixedPrecision : IDisposable
{
    private readonly nn.Module<Tensor, Tensor> _compute;
    private readonly List<(TorchSharp.Modules.Parameter Master, TorchSharp.Modules.Parameter Compute)> _parameters;
    private readonly List<(Tensor Master, Tensor Compute)> _buffers;

    private MixedPrecision(nn.Module<Tensor, Tensor> compute, ScalarType dtype,
        List<(TorchSharp.Modules.Parameter, TorchSharp.Modules.Parameter)> parameters, List<(Tensor, Tensor)> buffers)
    {
        _compute = compute;
        Dtype = dtype;
        _parameters = parameters;
        _buffers = buffers;
        Scaler = dtype == ScalarType.Float16 ? new LossScaler() : null;
    }

    /// <summary>The reduced precision the compute copy runs in.</summary>
    public ScalarType Dtype { get; }

    /// <summary>fp16's dynamic loss scale; null for bf16 (its range is fp32's).</summary>
    public LossScaler? Scaler { get; }

    /// <summary>The compute dtype of a <c>trial.precision</c> value; null for fp32.</summary>
    /// <exception cref="ArgumentException">Not fp32, bf16 or fp16.</exception>
    public static ScalarType? DtypeOf(string precision) => precision switch
    {
        "fp32" => null,
        "bf16" => ScalarType.BFloat16,
        "fp16" => ScalarType.Float16,
        _ => throw new ArgumentException($"unknown precision '{precision}': one of fp32, bf16, fp16", nameof(precision)),
    };

    /// <summary>
    /// Builds the compute copy of <paramref name="master"/> (already on <paramref name="device"/>)
    /// with <paramref name="build"/>, which makes a fresh module of the same architecture.
    /// </summary>
    public static MixedPrecision Create(nn.Module<Tensor, Tensor> master, Func<nn.Module<Tensor, Tensor>> build, Device device, ScalarType dtype)
    {
        var compute = build();
        try
        {
            compute.to(device);
            compute.to(dtype);
            // Normalisation stays fp32: its statistics and affine parameters need the range and precision.
            foreach (var module in compute.modules().Where(IsNormalisation)) module.to(ScalarType.Float32);
            var masters = master.named_parameters().ToDictionary(p => p.name, p => p.parameter, StringComparer.Ordinal);
            var parameters = new List<(TorchSharp.Modules.Parameter, TorchSharp.Modules.Parameter)>();
            foreach (var (name, p) in compute.named_parameters())
            {
                if (!masters.TryGetValue(name, out var m))
                    throw new InvalidOperationException($"the compute copy has a parameter '{name}' the model lacks");
                // A frozen backbone stays frozen here too; only what the master trains gets gradients.
                p.requires_grad_(m.requires_grad);
                parameters.Add((m, p));
            }
            var masterBuffers = master.named_buffers().ToDictionary(b => b.name, b => b.buffer, StringComparer.Ordinal);
            var buffers = compute.named_buffers().Select(b => (masterBuffers[b.name], b.buffer)).ToList();
            var mixed = new MixedPrecision(compute, dtype, parameters, buffers);
            mixed.WeightsToCompute();
            mixed.BuffersToCompute();
            return mixed;
        }
        catch
        {
            compute.Dispose();
            throw;
        }
    }

    private static bool IsNormalisation(nn.Module module) =>
        module is TorchSharp.Modules.BatchNorm1d or TorchSharp.Modules.BatchNorm2d or TorchSharp.Modules.BatchNorm3d
            or TorchSharp.Modules.GroupNorm or TorchSharp.Modules.LayerNorm
            or TorchSharp.Modules.InstanceNorm1d or TorchSharp.Modules.InstanceNorm2d or TorchSharp.Modules.InstanceNorm3d;

    /// <summary>Sets the compute copy's training or evaluation mode (dropout, normalisation statistics).</summary>
    public void Train(bool on) => _compute.train(on);

    /// <summary>The master's weights, as they are now (after a step, pruning, a resume), into the compute copy.</summary>
    public void WeightsToCompute()
    {
        using var _ = torch.no_grad();
        foreach (var (master, compute) in _parameters) compute.copy_(master);
    }

    /// <summary>The master's normalisation statistics into the compute copy (at an epoch's start).</summary>
    public void BuffersToCompute()
    {
        using var _ = torch.no_grad();
        foreach (var (master, compute) in _buffers) compute.copy_(master);
    }

    /// <summary>The compute copy's statistics, updated by training, back into the master (before evaluating or saving it).</summary>
    public void BuffersToMaster()
    {
        using var _ = torch.no_grad();
        foreach (var (master, compute) in _buffers) master.copy_(compute);
    }

    /// <summary>Forward in reduced precision; the logits come back as fp32, for an fp32 loss.</summary>
    public Tensor Forward(Tensor x) => _compute.forward(x.to(Dtype)).to(ScalarType.Float32);

    /// <summary>
    /// Backward through the compute copy (the loss scaled for fp16), then its gradients into the
    /// master's, in fp32 and unscaled. The master's optimiser steps on them.
    /// </summary>
    public void Backward(Tensor loss)
    {
        _compute.zero_grad();
        if (Scaler is { } scaler) (loss * scaler.Scale).backward();
        else loss.backward();
        var unscale = Scaler is { } s ? 1.0 / s.Scale : 1.0;
        using var _ = torch.no_grad();
        foreach (var (master, compute) in _parameters)
        {
            if (!master.requires_grad) continue;
            using var grad = compute.grad;
            if (grad is null) continue;
            using var existing = master.grad;
            if (existing is null)
            {
                var fresh = grad.to(ScalarType.Float32);
                if (unscale != 1.0) fresh.mul_(unscale);
                master.grad = fresh;
            }
            else
            {
                existing.copy_(grad);
                if (unscale != 1.0) existing.mul_(unscale);
            }
        }
    }

    /// <summary>
    /// fp16: whether every master gradient is finite (after the ranks averaged them, so every rank
    /// decides alike). A step with an overflow is skipped and the scale halves; bf16 always steps.
    /// </summary>
    public bool StepAllowed()
    {
        if (Scaler is not { } scaler) return true;
        using var _ = torch.no_grad();
        var checks = _parameters.Where(p => p.Master.requires_grad).Select(p => p.Master.grad).OfType<Tensor>().Select(g => g.isfinite().all()).ToArray();
        var finite = checks.Length == 0 || torch.stack(checks).all().item<bool>();
        scaler.Update(finite);
        return finite;
    }

    public void Dispose() => _compute.Dispose();
}

/// <summary>
/// fp16's dynamic loss scale: the loss is multiplied by <see cref="Scale"/> before backward so
/// that small gradients survive fp16; a step whose gradients overflow is skipped and the scale
/// halves; after <see cref="GrowthInterval"/> good steps in a row it doubles (PyTorch's GradScaler
/// defaults). Saved in checkpoints, so a resumed run continues with the same scale.
/// </summary>
internal sealed class LossScaler
{
    /// <summary>Good steps in a row before the scale doubles.</summary>
    public const int GrowthInterval = 2000;

    /// <summary>The first scale: 2^16.</summary>
    public const double InitialScale = 65536;

    public double Scale { get; private set; } = InitialScale;

    /// <summary>Good steps since the scale last changed.</summary>
    public int GoodSteps { get; private set; }

    /// <summary>Steps skipped for an overflow, over the whole run.</summary>
    public long Skipped { get; private set; }

    /// <summary>Records a step: skipped (an overflow) or taken.</summary>
    public void Update(bool finite)
    {
        if (!finite)
        {
            Scale = Math.Max(1, Scale / 2);
            GoodSteps = 0;
            Skipped++;
        }
        else if (++GoodSteps >= GrowthInterval)
        {
            Scale *= 2;
            GoodSteps = 0;
        }
    }

    /// <summary>The state, for a checkpoint: scale (8 bytes), good steps (4), skipped steps (8), little-endian.</summary>
    public byte[] Save()
    {
        var state = new byte[StateBytes];
        System.Buffers.Binary.BinaryPrimitives.WriteDoubleLittleEndian(state, Scale);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(state.AsSpan(8), GoodSteps);
        System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(state.AsSpan(12), Skipped);
        return state;
    }

    private const int StateBytes = 20;

    /// <summary>Restores <see cref="Save"/>'s state.</summary>
    /// <exception cref="InvalidDataException">Not a saved state.</exception>
    public void Load(byte[] state)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (state.Length != StateBytes) throw new InvalidDataException($"a loss-scale state is {StateBytes} bytes, not {state.Length}");
        var scale = System.Buffers.Binary.BinaryPrimitives.ReadDoubleLittleEndian(state);
        var good = System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(state.AsSpan(8));
        var skipped = System.Buffers.Binary.BinaryPrimitives.ReadInt64LittleEndian(state.AsSpan(12));
        if (!double.IsFinite(scale) || scale < 1 || good is < 0 or >= GrowthInterval || skipped < 0)
            throw new InvalidDataException($"not a loss-scale state (scale {scale}, {good} good steps, {skipped} skipped)");
        (Scale, GoodSteps, Skipped) = (scale, good, skipped);
    }
}

using Orchestrator.Trials;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Orchestrator.Worker.Pruning;

/// <summary>
/// Magnitude pruning of a model's conv and linear weights (biases and batch norm are left
/// alone): one mask per weight, of the weight's shape and type, on its device. After every
/// optimiser step <see cref="AfterStep"/> multiplies each weight by its mask, so a pruned weight is
/// a plain zero in the model (and in every checkpoint and export of it), and on the schedule's
/// steps recomputes the masks from the weights' magnitudes: per layer (each layer to the
/// sparsity) or globally (one threshold over all of them). Masks only ever grow sparser: pruned
/// weights are zero, the smallest magnitudes there are, when the next masks are chosen. Call on
/// the training thread inside the step's dispose scope; the masks themselves live outside it.
/// </summary>
public sealed class MagnitudePruner : IDisposable
{
    private readonly List<(string Name, Parameter Weight, Tensor Mask)> _targets = [];
    private readonly bool _global;
    private long _pruned;

    /// <param name="model">The model, already on its device (to(device) replaces the parameters).</param>
    public MagnitudePruner(nn.Module model, PruningSpec spec, PruningSchedule schedule)
    {
        Schedule = schedule;
        _global = spec.Scope == "global";
        foreach (var (name, module) in model.named_modules())
        {
            var weight = module switch
            {
                Conv2d c => c.weight,
                Linear l => l.weight,
                _ => null,
            };
            // A frozen weight (transfer learning) cannot recover from pruning: only trained ones are pruned.
            if (weight is null || !weight.requires_grad) continue;
            _targets.Add((name + ".weight", weight, torch.ones_like(weight).DetachFromDisposeScope()));
            Prunable += weight.numel();
        }
        if (_targets.Count == 0) throw new InvalidOperationException("the model has no trainable conv or linear weight to prune");
    }

    public PruningSchedule Schedule { get; }

    /// <summary>How many weights may be pruned (the elements of every conv and linear weight).</summary>
    public long Prunable { get; }

    /// <summary>The fraction of prunable weights that the masks set to zero now.</summary>
    public double Sparsity => (double)_pruned / Prunable;

    /// <summary>The mask of a weight, by its state-dict name (1 keeps, 0 prunes).</summary>
    public Tensor MaskOf(string name) => _targets.Single(t => t.Name == name).Mask;

    /// <summary>After <paramref name="completedSteps"/> optimiser steps: recompute the masks when the schedule says so, then apply them.</summary>
    public void AfterStep(long completedSteps)
    {
        using var _ = torch.no_grad();
        Apply();
        if (!Schedule.UpdatesAt(completedSteps)) return;
        var sparsity = Schedule.SparsityAt(completedSteps);
        if (_global) UpdateGlobal(sparsity);
        else foreach (var t in _targets) SetMask(t.Weight.abs().flatten(), t.Mask.view(-1), sparsity);
        RecountPruned();
        Apply();
    }

    /// <summary>Multiplies every weight by its mask.</summary>
    public void Apply()
    {
        using var _ = torch.no_grad();
        foreach (var t in _targets) t.Weight.mul_(t.Mask);
    }

    /// <summary>Zeros the <c>round(sparsity × n)</c> smallest of <paramref name="magnitudes"/> in <paramref name="mask"/> (flat, of one size); ones elsewhere.</summary>
    private static void SetMask(Tensor magnitudes, Tensor mask, double sparsity)
    {
        var k = (long)Math.Round(sparsity * magnitudes.numel());
        mask.fill_(1);
        if (k == 0) return;
        // A stable sort: ties (the zeros of earlier prunings) are broken by position, the same on every rank.
        var (_, order) = magnitudes.sort(stable: true);
        mask.index_fill_(0, order.narrow(0, 0, k), 0);
    }

    private void UpdateGlobal(double sparsity)
    {
        var all = torch.cat(_targets.Select(t => t.Weight.abs().flatten()).ToList());
        var flat = torch.ones_like(all);
        SetMask(all, flat, sparsity);
        long offset = 0;
        foreach (var t in _targets)
        {
            var n = t.Mask.numel();
            t.Mask.view(-1).copy_(flat.narrow(0, offset, n));
            offset += n;
        }
    }

    private void RecountPruned()
    {
        long pruned = 0;
        foreach (var t in _targets) pruned += Count(t.Mask);
        _pruned = pruned;
    }

    /// <summary>Zeros in a mask (reads the device: only at mask updates and on load).</summary>
    private static long Count(Tensor mask) => mask.numel() - mask.count_nonzero().ToInt64();

    /// <summary>The masks, one bit per weight, for a checkpoint.</summary>
    public byte[] Save()
    {
        using var stream = new MemoryStream();
        using (var w = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true))
        {
            w.Write(FormatVersion);
            w.Write(_targets.Count);
            foreach (var (name, _, mask) in _targets)
            {
                using var scope = torch.NewDisposeScope();
                var bits = mask.flatten().ne(0).to(CPU).to_type(ScalarType.Byte).data<byte>().ToArray();
                w.Write(name);
                w.Write((long)bits.Length);
                var packed = new byte[(bits.Length + 7) / 8];
                for (var i = 0; i < bits.Length; i++)
                    if (bits[i] != 0) packed[i >> 3] |= (byte)(1 << (i & 7));
                w.Write(packed);
            }
        }
        return stream.ToArray();
    }

    /// <summary>Restores masks written by <see cref="Save"/> and applies them; a mismatch with this model is an <see cref="InvalidDataException"/>.</summary>
    public void Load(byte[] section)
    {
        using var r = new BinaryReader(new MemoryStream(section, writable: false));
        if (r.ReadInt32() is var version && version != FormatVersion) throw new InvalidDataException($"pruning masks of unknown version {version}");
        var count = r.ReadInt32();
        if (count != _targets.Count) throw new InvalidDataException($"the checkpoint has {count} pruning masks, the model {_targets.Count} prunable weights");
        foreach (var (name, _, mask) in _targets)
        {
            var saved = r.ReadString();
            var n = r.ReadInt64();
            if (saved != name || n != mask.numel())
                throw new InvalidDataException($"the checkpoint's pruning mask '{saved}' ({n} weights) does not fit '{name}' ({mask.numel()} weights)");
            var packed = r.ReadBytes((int)((n + 7) / 8));
            var bits = new byte[n];
            for (var i = 0; i < n; i++) bits[i] = (byte)((packed[i >> 3] >> (i & 7)) & 1);
            using var scope = torch.NewDisposeScope();
            using (torch.no_grad())
                mask.view(-1).copy_(torch.tensor(bits).to_type(mask.dtype).to(mask.device));
        }
        using var counting = torch.NewDisposeScope();
        RecountPruned();
        Apply();
    }

    private const int FormatVersion = 1;

    public void Dispose()
    {
        foreach (var t in _targets) t.Mask.Dispose();
    }
}

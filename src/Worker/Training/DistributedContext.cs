using System.Buffers;
using System.Diagnostics;
using Orchestrator.Worker.Distributed;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Orchestrator.Worker.Training;

/// <summary>
/// This process's place in a data-parallel trial: its rank, the gang size, and the all-reduce that
/// averages gradients. Every rank starts from the same weights (same seed), sees its own shard of
/// each epoch (<see cref="Data.EpochSampler"/>), and applies the same averaged gradient, so the
/// replicas stay identical; BatchNorm statistics stay local per rank, as in PyTorch DDP.
/// </summary>
public sealed class DistributedContext(int rank, int worldSize, IAllReduce allReduce)
{
    private float[] _buffer = [];

    public int Rank { get; } = rank;
    public int WorldSize { get; } = worldSize;
    public IAllReduce AllReduce { get; } = allReduce;

    /// <summary>Time and bytes spent averaging gradients since the last <see cref="TakeStats"/>.</summary>
    private long _ticks;
    private long _bytes;
    private int _calls;

    public (double MeanSeconds, double BytesPerCall) TakeStats()
    {
        var calls = Math.Max(1, _calls);
        var result = (TimeSpan.FromTicks(_ticks).TotalSeconds / calls, (double)_bytes / calls);
        _ticks = 0;
        _bytes = 0;
        _calls = 0;
        return result;
    }

    /// <summary>
    /// Replaces every parameter's gradient by its mean over the ranks: flatten into one host buffer,
    /// all-reduce in place, copy back. Runs on the training thread inside the step's dispose scope;
    /// the collective is awaited synchronously, so the scope never crosses threads.
    /// </summary>
    public void AverageGradients(IReadOnlyList<Parameter> parameters, CancellationToken ct)
    {
        var started = Stopwatch.GetTimestamp();
        var grads = parameters.Select(p => p.grad ?? torch.zeros_like(p)).ToList();
        using var flat = torch.cat(grads.Select(g => g.flatten()).ToList()).to(torch.CPU).contiguous();
        var n = (int)flat.numel();
        if (_buffer.Length < n) _buffer = new float[n];
        flat.bytes.CopyTo(System.Runtime.InteropServices.MemoryMarshal.AsBytes(_buffer.AsSpan(0, n)));
        AllReduce.AllReduceAsync(_buffer.AsMemory(0, n), ct).AsTask().GetAwaiter().GetResult();
        // frombuffer wraps the array without copying; the copies into the gradients below finish
        // before the buffer is reused.
        using var host = torch.frombuffer(_buffer, ScalarType.Float32, n);
        using var averaged = host.to(parameters[0].device);
        long offset = 0;
        for (var i = 0; i < parameters.Count; i++)
        {
            var p = parameters[i];
            var count = p.numel();
            using var slice = averaged.narrow(0, offset, count).view(p.shape);
            if (p.grad is { } g) g.copy_(slice);
            offset += count;
        }
        _ticks += Stopwatch.GetElapsedTime(started).Ticks;
        _bytes += (long)n * sizeof(float);
        _calls++;
    }

    /// <summary>Combines per-rank evaluations into the evaluation of the whole validation set.</summary>
    public EvalResult Reduce(EvalResult local, CancellationToken ct)
    {
        var k = local.ConfusionMatrix.Length;
        var values = new double[3 + k * k];
        values[0] = local.Loss * local.Count;
        values[1] = local.Top5 * local.Count;
        values[2] = local.Count;
        for (var t = 0; t < k; t++)
        for (var p = 0; p < k; p++)
            values[3 + t * k + p] = local.ConfusionMatrix[t][p];
        var sum = Sum(values, ct);
        var count = (long)Math.Round(sum[2]);
        var confusion = new long[k][];
        long correct = 0;
        var perClass = new double[k];
        for (var t = 0; t < k; t++)
        {
            confusion[t] = new long[k];
            for (var p = 0; p < k; p++) confusion[t][p] = (long)Math.Round(sum[3 + t * k + p]);
            correct += confusion[t][t];
            var total = confusion[t].Sum();
            perClass[t] = total == 0 ? double.NaN : (double)confusion[t][t] / total;
        }
        return new EvalResult((int)count, count == 0 ? double.NaN : sum[0] / count,
            count == 0 ? 0 : (double)correct / count, count == 0 ? 0 : Math.Round(sum[1]) / count, perClass, confusion);
    }

    /// <summary>
    /// True on every rank when <paramref name="local"/> is true on at least one. A collective:
    /// every rank calls it at the same point of its run.
    /// </summary>
    public bool Any(bool local, CancellationToken ct) => Sum([local ? 1 : 0], ct)[0] > 0.5;

    /// <summary>Sums small per-rank statistics (loss sums, counts, confusion matrices) over the ranks.</summary>
    public double[] Sum(ReadOnlySpan<double> values, CancellationToken ct)
    {
        // The collective averages float32; scale back by the world size and round counts by the caller.
        var buffer = ArrayPool<float>.Shared.Rent(values.Length);
        try
        {
            for (var i = 0; i < values.Length; i++) buffer[i] = (float)values[i];
            AllReduce.AllReduceAsync(buffer.AsMemory(0, values.Length), ct).AsTask().GetAwaiter().GetResult();
            var result = new double[values.Length];
            for (var i = 0; i < values.Length; i++) result[i] = (double)buffer[i] * WorldSize;
            return result;
        }
        finally
        {
            ArrayPool<float>.Shared.Return(buffer);
        }
    }
}

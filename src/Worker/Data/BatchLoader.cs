using System.Collections.Concurrent;
using System.Diagnostics;
using Orchestrator.Data;

namespace Orchestrator.Worker.Data;

/// <summary>How a loader cuts and augments batches on the host.</summary>
/// <param name="BatchSize">Items per batch (per rank).</param>
/// <param name="Shuffle">A new seeded order every epoch (training); off for evaluation.</param>
/// <param name="DropLast">Drop a last incomplete batch (training, so BatchNorm never sees a batch of 1).</param>
/// <param name="Seed">The run's seed: order and augmentation derive from it and the epoch.</param>
/// <param name="CropSize">Output side; with <paramref name="CropPadding"/> &gt; 0 or a smaller side than the data, a random crop.</param>
/// <param name="CropPadding">Zero padding before the random crop (CIFAR style: 4).</param>
/// <param name="Flip">Random horizontal flip with probability ½.</param>
/// <param name="PrefetchBatches">Batches prepared ahead (at least one per loader thread).</param>
/// <param name="RandomResizedCropSide">ImageNet-style random-resized crop to this side, cut from each decoded original; only for an <see cref="ICroppingImageDataset"/> (other data sets crop on the device).</param>
/// <param name="LoaderThreads">Threads that read, decode and augment batches; batch b is made by thread b mod N, so the batches and their order do not depend on N.</param>
public sealed record BatchPlan(
    int BatchSize,
    bool Shuffle,
    bool DropLast,
    long Seed,
    int? CropSize = null,
    int CropPadding = 0,
    bool Flip = false,
    int Rank = 0,
    int WorldSize = 1,
    int PrefetchBatches = 3,
    bool PadShards = true,
    int LoaderThreads = 1,
    int? RandomResizedCropSide = null);

/// <summary>
/// Produces host batches for an epoch on background threads while the training thread computes:
/// per-epoch seeded order (<see cref="EpochSampler"/>), random crop with padding and horizontal flip
/// done while copying bytes (cheap and exact), pooled buffers. No tensors are made here: TorchSharp
/// work stays on the training thread, inside its dispose scope.
/// </summary>
public sealed class BatchLoader : IDisposable
{
    private readonly IImageDataset _data;
    private readonly BatchPlan _plan;
    private readonly EpochSampler _sampler;
    private readonly ConcurrentBag<HostBatch> _pool = [];
    private readonly ImageShape _outShape;
    private readonly ICroppingImageDataset? _cropping;
    private long _waitTicks;

    public BatchLoader(IImageDataset data, BatchPlan plan)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(plan.BatchSize);
        _data = data;
        _plan = plan;
        _sampler = new EpochSampler(data.Count, plan.Shuffle, plan.Seed, plan.Rank, plan.WorldSize, plan.PadShards);
        var side = plan.CropSize ?? data.Shape.Height;
        if (side > data.Shape.Height + 2 * plan.CropPadding || side > data.Shape.Width + 2 * plan.CropPadding)
            throw new ArgumentException($"crop size {side} is larger than the {data.Shape} images plus padding {plan.CropPadding}");
        _outShape = plan.CropSize is null ? data.Shape : new ImageShape(data.Shape.Channels, side, side);
        // A random-resized crop from the original: the window is cut while decoding.
        if (plan.RandomResizedCropSide is { } crop && data is ICroppingImageDataset cropping)
        {
            _cropping = cropping;
            _outShape = new ImageShape(data.Shape.Channels, crop, crop);
        }
    }

    /// <summary>The shape of the images the loader emits.</summary>
    public ImageShape OutputShape => _outShape;

    public int BatchesPerEpoch => _plan.DropLast
        ? Math.Max(1, _sampler.ItemsPerRank / _plan.BatchSize)
        : (_sampler.ItemsPerRank + _plan.BatchSize - 1) / _plan.BatchSize;

    /// <summary>Items one epoch yields on this rank.</summary>
    public int ItemsPerEpoch => _plan.DropLast ? Math.Min(_sampler.ItemsPerRank, BatchesPerEpoch * _plan.BatchSize) : _sampler.ItemsPerRank;

    /// <summary>Time the consumer spent waiting for a batch since the last call (data-loader stall).</summary>
    public TimeSpan TakeWaitTime() => TimeSpan.FromTicks(Interlocked.Exchange(ref _waitTicks, 0));

    /// <summary>The batches of one epoch, starting at batch <paramref name="skipBatches"/> (for a mid-epoch resume).</summary>
    public IEnumerable<HostBatch> Epoch(int epoch, CancellationToken ct, int skipBatches = 0)
    {
        var indices = _sampler.Indices(epoch);
        var batches = BatchesPerEpoch;
        // Thread k makes batches skip+k, skip+k+N, …, into its own queue; the consumer takes them
        // round-robin, so the order is the batches' order whatever N is.
        var threads = Math.Clamp(_plan.LoaderThreads, 1, Math.Max(1, batches - skipBatches));
        var queues = Enumerable.Range(0, threads)
            .Select(_ => new BlockingCollection<HostBatch>(Math.Max(1, (_plan.PrefetchBatches + threads - 1) / threads)))
            .ToArray();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        Exception? failure = null;
        var producers = Enumerable.Range(0, threads).Select(k => new Thread(() =>
        {
            try
            {
                for (var b = skipBatches + k; b < batches && !stop.IsCancellationRequested; b += threads)
                {
                    var batch = Rent();
                    Fill(batch, indices, epoch, b);
                    queues[k].Add(batch, stop.Token);
                }
            }
            catch (OperationCanceledException) { }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref failure, e, null);
                // The others stop too: the epoch ends with this error.
                stop.Cancel();
            }
            finally { queues[k].CompleteAdding(); }
        })
        { IsBackground = true, Name = $"batch-loader-{k}" }).ToList();
        producers.ForEach(p => p.Start());
        try
        {
            for (var b = skipBatches; b < batches; b++)
            {
                var started = Stopwatch.GetTimestamp();
                HostBatch? next;
                try
                {
                    if (!queues[(b - skipBatches) % threads].TryTake(out next, Timeout.Infinite, ct)) break;
                }
                catch (InvalidOperationException) { break; } // completed: that thread stopped early
                var waited = Stopwatch.GetElapsedTime(started);
                Interlocked.Add(ref _waitTicks, waited.Ticks);
                Training.TrainingMetrics.WaitedForData(waited);
                yield return next;
            }
            if (failure is not null) throw new InvalidDataException(failure.Message, failure);
            ct.ThrowIfCancellationRequested();
        }
        finally
        {
            stop.Cancel();
            producers.ForEach(p => p.Join());
            foreach (var queue in queues)
            {
                while (queue.TryTake(out var left)) _pool.Add(left);
                queue.Dispose();
            }
        }
    }

    /// <summary>Gives a batch's buffers back for reuse.</summary>
    public void Return(HostBatch batch) => _pool.Add(batch);

    private HostBatch Rent() => _pool.TryTake(out var b) ? b : new HostBatch(_outShape, _plan.BatchSize);

    private void Fill(HostBatch batch, int[] indices, int epoch, int b)
    {
        var start = b * _plan.BatchSize;
        var count = Math.Min(_plan.BatchSize, indices.Length - start);
        batch.Count = count;
        batch.Epoch = epoch;
        batch.Index = b;
        batch.AugmentSeed = SeedMix.Of(_plan.Seed, 0xA06, epoch, ((long)_plan.Rank << 32) | (uint)b);
        var rng = new Random((int)(batch.AugmentSeed & 0x7FFFFFFF));
        if (_cropping is not null)
        {
            FillCropped(batch, indices, start, count, rng);
            return;
        }
        var src = _data.Shape;
        var needsCrop = _plan.CropPadding > 0 || _outShape != src;
        byte[]? scratch = needsCrop || _plan.Flip ? new byte[src.Size] : null;
        for (var i = 0; i < count; i++)
        {
            var item = indices[start + i];
            batch.Labels[i] = _data.GetLabel(item);
            var dst = batch.Images.AsSpan(i * _outShape.Size, _outShape.Size);
            if (scratch is null)
            {
                _data.CopyImage(item, dst);
                continue;
            }
            _data.CopyImage(item, scratch);
            // Draw in a fixed order so results do not depend on which options are on.
            var maxY = src.Height + 2 * _plan.CropPadding - _outShape.Height;
            var maxX = src.Width + 2 * _plan.CropPadding - _outShape.Width;
            var oy = _plan.Shuffle || _plan.CropPadding > 0 ? rng.Next(maxY + 1) - _plan.CropPadding : maxY / 2 - _plan.CropPadding;
            var ox = _plan.Shuffle || _plan.CropPadding > 0 ? rng.Next(maxX + 1) - _plan.CropPadding : maxX / 2 - _plan.CropPadding;
            var flip = _plan.Flip && rng.Next(2) == 1;
            CropFlip(scratch, src, dst, _outShape, oy, ox, flip);
        }
    }

    /// <summary>Random-resized crops cut while decoding, then the flip.</summary>
    private void FillCropped(HostBatch batch, int[] indices, int start, int count, Random rng)
    {
        var scratch = _plan.Flip ? new byte[_outShape.Size] : null;
        for (var i = 0; i < count; i++)
        {
            var item = indices[start + i];
            batch.Labels[i] = _data.GetLabel(item);
            var dst = batch.Images.AsSpan(i * _outShape.Size, _outShape.Size);
            // One generator per batch, drawn in item order: the batch is the same on any loader thread.
            var flip = _plan.Flip && rng.Next(2) == 1;
            if (!flip)
            {
                _cropping!.CopyRandomResizedCrop(item, dst, _outShape.Height, rng);
                continue;
            }
            _cropping!.CopyRandomResizedCrop(item, scratch, _outShape.Height, rng);
            CropFlip(scratch, _outShape, dst, _outShape, 0, 0, flip: true);
        }
    }

    /// <summary>Copies the window at (oy, ox) of <paramref name="src"/> (zero outside) into <paramref name="dst"/>, mirrored if asked.</summary>
    public static void CropFlip(ReadOnlySpan<byte> src, ImageShape s, Span<byte> dst, ImageShape d, int oy, int ox, bool flip)
    {
        dst.Clear();
        for (var c = 0; c < d.Channels; c++)
        {
            var srcPlane = src.Slice(c * s.Height * s.Width, s.Height * s.Width);
            var dstPlane = dst.Slice(c * d.Height * d.Width, d.Height * d.Width);
            for (var y = 0; y < d.Height; y++)
            {
                var sy = y + oy;
                if ((uint)sy >= (uint)s.Height) continue;
                var x0 = Math.Max(0, -ox);
                var x1 = Math.Min(d.Width, s.Width - ox);
                if (x1 <= x0) continue;
                var srcRow = srcPlane.Slice(sy * s.Width + x0 + ox, x1 - x0);
                var dstRow = dstPlane.Slice(y * d.Width, d.Width);
                if (!flip)
                {
                    srcRow.CopyTo(dstRow[x0..x1]);
                }
                else
                {
                    // Mirror the whole output row: output x maps to d.Width-1-x.
                    for (var x = x0; x < x1; x++) dstRow[d.Width - 1 - x] = srcRow[x - x0];
                }
            }
        }
    }

    public void Dispose() => _pool.Clear();
}

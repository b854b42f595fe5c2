using Orchestrator.Worker.Data;

namespace Orchestrator.Worker.UnitTests.Data;

public class EpochSamplerTests
{
    [Fact]
    public void Ranks_get_equal_disjoint_shards_that_cover_the_data_set()
    {
        const int count = 103, world = 4;
        var shards = Enumerable.Range(0, world).Select(r => new EpochSampler(count, true, 7, r, world).Indices(3)).ToArray();
        Assert.All(shards, s => Assert.Equal(26, s.Length));
        var all = shards.SelectMany(s => s).ToArray();
        Assert.Equal(Enumerable.Range(0, count), all.Distinct().Order());
        // 4 × 26 = 104 slots for 103 items: exactly one item is repeated (the wrap-around pad).
        Assert.Equal(count + 1, all.Length);
    }

    [Fact]
    public void Order_is_reproducible_per_epoch_and_changes_between_epochs()
    {
        var a = new EpochSampler(1000, true, 42);
        var b = new EpochSampler(1000, true, 42);
        Assert.Equal(a.Indices(1), b.Indices(1));
        Assert.NotEqual(a.Indices(1), a.Indices(2));
        Assert.NotEqual(a.Indices(1), new EpochSampler(1000, true, 43).Indices(1));
    }

    [Fact]
    public void Without_shuffle_the_order_is_the_identity()
    {
        Assert.Equal(Enumerable.Range(0, 10), new EpochSampler(10, false, 1).Indices(5));
    }

    [Fact]
    public void One_rank_of_two_sees_every_other_item_of_the_single_rank_order()
    {
        var single = new EpochSampler(64, true, 9).Indices(1);
        var rank1 = new EpochSampler(64, true, 9, rank: 1, worldSize: 2).Indices(1);
        Assert.Equal(single.Where((_, i) => i % 2 == 1), rank1);
    }
}

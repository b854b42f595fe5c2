using Orchestrator.Protocol.V1;

namespace Orchestrator.Cli.FunctionalTests;

/// <summary>A Redis outage in the middle of a sweep, with real worker processes training through it.</summary>
public sealed partial class SweepEndToEndTests
{
    // This test found a hang: an upload the coordinator ended with UNAVAILABLE while its chunks were
    // still coming killed the worker's connection, and the upload's write then waited forever. Now
    // the coordinator holds uploads through an outage, and every checkpoint transfer has a deadline.
    [Fact]
    public async Task A_Redis_outage_mid_sweep_is_ridden_out_every_trial_completes_once_on_its_first_attempt_with_every_epoch_recorded_once()
    {
        StartWorker("w1");
        StartWorker("w2");
        var id = await SubmitAsync();
        await EventuallyAsync(async () => (await TrialsAsync(id)).FirstOrDefault(t => t.State == TrialState.Running && t.Epoch >= 1),
            TimeSpan.FromMinutes(2), "a first epoch");

        // Down for longer than the Redis client's 5 s command timeout and than the 3 s leases; then
        // back on the same port with the same append-only file. The workers train on meanwhile.
        await _redis.KillAsync(CancellationToken.None);
        await Task.Delay(TimeSpan.FromSeconds(8));
        await _redis.RestartAsync(CancellationToken.None);

        var sweep = await CompletedAsync(id);
        Assert.Equal(4, sweep.TrialsCompleted);
        // No trial was taken from its worker because Redis was down.
        Assert.All(await TrialsAsync(id), t => Assert.True(t.Attempt == 1, $"trial {t.Id} ran {t.Attempt} times\ncoordinator:\n{_coordinator.Output}"));
        await AssertEveryEpochRecordedOnceAsync(id);
    }
}

namespace Orchestrator.TestSupport;

/// <summary>Bounds every await in tests so a broken component fails a test instead of hanging the run.</summary>
public static class TaskTimeoutExtensions
{
    /// <summary>How long any single awaited operation in a test may take.</summary>
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    /// <summary>Fails with <see cref="TimeoutException"/> after <see cref="Timeout"/>.</summary>
    public static Task DefaultTimeout(this Task task) => task.WaitAsync(Timeout);

    /// <summary>Fails with <see cref="TimeoutException"/> after <see cref="Timeout"/>.</summary>
    public static Task<T> DefaultTimeout<T>(this Task<T> task) => task.WaitAsync(Timeout);
}

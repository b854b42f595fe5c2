using System.Reflection;
using Microsoft.Extensions.Logging;

namespace Orchestrator.Worker.UnitTests.Host;

public sealed class LogEventIdTests
{
    [Fact]
    public void Every_log_message_of_the_worker_has_its_own_event_id_in_the_worker_range()
    {
        var messages = typeof(Orchestrator.Worker.Host.WorkerAgent).Assembly.GetTypes()
            .SelectMany(t => t.GetMethods(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static | BindingFlags.DeclaredOnly))
            .Select(m => (Method: $"{m.DeclaringType!.FullName}.{m.Name}", Attribute: m.GetCustomAttribute<LoggerMessageAttribute>()))
            .Where(m => m.Attribute is not null)
            .ToList();
        Assert.True(messages.Count >= 10, $"found only {messages.Count} log messages");
        // docs/operations.md: the worker's event ids are 100-129, the coordinator's below 100.
        Assert.All(messages, m => Assert.InRange(m.Attribute!.EventId, 100, 129));
        var shared = messages.GroupBy(m => m.Attribute!.EventId).Where(g => g.Count() > 1)
            .Select(g => $"{g.Key}: {string.Join(", ", g.Select(m => m.Method))}").ToList();
        Assert.True(shared.Count == 0, "event ids used twice:\n" + string.Join('\n', shared));
    }
}

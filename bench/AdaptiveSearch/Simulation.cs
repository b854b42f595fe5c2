using Orchestrator.Sweeps;

namespace Orchestrator.Bench.AdaptiveSearch;

/// <summary>What one method did: its best objective, the epochs it trained, the trials it stopped.</summary>
internal sealed record Outcome(double Best, int Epochs, int Stopped);

/// <summary>
/// Runs a searcher as a fleet of <c>parallel</c> equally fast workers would: each trial takes one
/// time unit per epoch, reports reach the searcher in time order (ties by trial index), a stopped
/// or finished trial frees its worker for the next pending trial at once.
/// </summary>
internal static class Simulation
{
    public static Outcome Run(Searcher searcher, int parallel, Func<IReadOnlyDictionary<string, string>, double[]> curveOf)
    {
        var pending = new Queue<CreateTrial>();
        var curves = new Dictionary<int, double[]>();
        var trained = new Dictionary<int, int>();
        var stopped = new HashSet<int>();
        var events = new PriorityQueue<(int Trial, int Epoch), (double Time, int Trial, int Epoch)>();
        var busy = 0;
        var now = 0.0;
        var over = false;

        void Apply(IEnumerable<SearchAction> actions)
        {
            foreach (var action in actions)
            {
                switch (action)
                {
                    case CreateTrial c:
                        pending.Enqueue(c);
                        break;
                    case StopTrial s:
                        stopped.Add(s.Index);
                        busy--;
                        break;
                    case ShutdownSearch:
                        over = true;
                        break;
                }
            }
        }

        Apply(searcher.Start());
        while (!over)
        {
            while (busy < parallel && pending.TryDequeue(out var next))
            {
                var curve = curveOf(next.Parameters);
                curves[next.Index] = curve;
                busy++;
                for (var e = 1; e <= curve.Length; e++) events.Enqueue((next.Index, e), (now + e, next.Index, e));
            }
            if (!events.TryDequeue(out var ev, out var at)) break;
            if (stopped.Contains(ev.Trial)) continue;
            now = at.Time;
            trained[ev.Trial] = ev.Epoch;
            var curveOfTrial = curves[ev.Trial];
            Apply(searcher.OnValidation(ev.Trial, ev.Epoch, curveOfTrial[ev.Epoch - 1]));
            if (!stopped.Contains(ev.Trial) && ev.Epoch == curveOfTrial.Length)
            {
                busy--;
                Apply(searcher.OnTrialExited(ev.Trial, succeeded: true));
            }
        }
        var best = trained.Max(t => curves[t.Key].Take(t.Value).Where(double.IsFinite).DefaultIfEmpty(0).Max());
        return new Outcome(best, trained.Values.Sum(), stopped.Count);
    }
}

using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Orchestrator.Sweeps.Stopping;

namespace Orchestrator.Sweeps;

/// <summary>
/// Runs a <see cref="ISearchMethod"/> for one sweep and owns everything around it: the lock, the
/// trial bookkeeping, idempotency (a repeated <see cref="Start"/>, report or exit changes nothing and
/// returns no actions), the seeded generator, the objective's target, the failed-trial budget and
/// the end of the search, and the sweep's early-stopping rule (<see cref="IStoppingRule"/>), which
/// composes with any method. Its whole state round-trips through <see cref="SaveState"/> and
/// <see cref="Restore"/>, so a restarted coordinator continues with exactly the actions it would
/// have taken.
/// </summary>
public sealed class Searcher
{
    private const int StateVersion = 1;

    private readonly Lock _gate = new();
    private ValidatedSweep _sweep;
    private readonly ISearchMethod _method;
    private IStoppingRule? _rule;
    private readonly SplitMix64 _random;
    private readonly SearchContext _context;
    private readonly SortedDictionary<int, TrialBook> _trials = [];
    private bool _started;
    private int _failed;
    private int _extraTrials;
    private double? _best;
    private int? _bestTrial;
    private ShutdownSearch? _shutdown;

    private readonly List<SearchObservation> _prior;

    private Searcher(ValidatedSweep sweep, ISearchMethod method, ulong randomState, IReadOnlyList<SearchObservation> prior)
    {
        _sweep = sweep;
        _method = method;
        _rule = StoppingRules.For(sweep.EarlyStopping);
        _random = new SplitMix64(randomState);
        _prior = [.. prior];
        _context = new SearchContext(sweep, _random, NewTrial, () => _trials.Count, () => _trials.Values.Count(t => t.Exited),
            () => _sweep.MaxTrials + _extraTrials, _prior);
    }

    /// <summary>
    /// A fresh searcher for <paramref name="sweep"/>, with the method its file names, and the
    /// results of an earlier sweep over the same space to learn from (search.warmStartFrom).
    /// </summary>
    public static Searcher Create(ValidatedSweep sweep, IReadOnlyList<SearchObservation>? warmStart = null)
    {
        ArgumentNullException.ThrowIfNull(sweep);
        return new Searcher(sweep, MethodFor(sweep.Method), unchecked((ulong)(long)sweep.Seed), warmStart ?? []);
    }

    /// <summary>
    /// True when every objective report changes the state (an early-stopping rule or a model-based
    /// method learns from it): the caller saves the state after each report, not only on a new
    /// best, so that a restart makes the same decisions.
    /// </summary>
    public bool ReportsChangeState => _rule is not null || _method.LearnsFromReports;

    /// <summary>The searcher as it was when <paramref name="stateJson"/> was saved (by <see cref="SaveState"/>).</summary>
    /// <exception cref="ArgumentException">The state is unreadable or belongs to another sweep spec.</exception>
    public static Searcher Restore(ValidatedSweep sweep, string stateJson)
    {
        ArgumentNullException.ThrowIfNull(sweep);
        ArgumentNullException.ThrowIfNull(stateJson);
        SearcherState? state;
        try
        {
            state = JsonSerializer.Deserialize(stateJson, SearcherJsonContext.Default.SearcherState);
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"the searcher state is not valid JSON: {e.Message}", nameof(stateJson), e);
        }
        if (state is null || state.Version != StateVersion)
            throw new ArgumentException($"the searcher state has version {state?.Version.ToString(CultureInfo.InvariantCulture) ?? "none"}, expected {StateVersion}", nameof(stateJson));
        if (state.Method != sweep.Method || state.SpecSha256 != Fingerprint(sweep))
            throw new ArgumentException("the searcher state was saved for another sweep spec", nameof(stateJson));

        var searcher = new Searcher(sweep, MethodFor(sweep.Method), state.RandomState, state.Prior)
        {
            _started = state.Started,
            _failed = state.Failed,
            _extraTrials = state.ExtraTrials,
            _best = state.Best,
            _bestTrial = state.BestTrial,
            _shutdown = state.ShutdownReason is { } reason ? new ShutdownSearch(reason) { Failed = state.ShutdownFailed } : null,
        };
        foreach (var t in state.Trials) searcher._trials[t.Index] = t;
        searcher._method.Restore(state.MethodState);
        if (state.StoppingState is { ValueKind: JsonValueKind.Object } stopping) searcher._rule?.Restore(stopping);
        return searcher;
    }

    /// <summary>The search's end, once it shut down (and the sweep must finish); null while it runs.</summary>
    public ShutdownSearch? Ended
    {
        get
        {
            lock (_gate) return _shutdown;
        }
    }

    /// <summary>
    /// What the searcher knows of each trial, by index: the last epoch it saw reported, whether it
    /// exited and whether it was stopped early. A recovering coordinator compares it with the store
    /// and replays what the saved state missed.
    /// </summary>
    public IReadOnlyList<SearcherTrial> Trials()
    {
        lock (_gate) return [.. _trials.Values.Select(t => new SearcherTrial(t.Index, t.LastEpoch, t.Exited, t.Stopped))];
    }

    /// <summary>How far the search is, 0..1 (1 once it has shut down).</summary>
    public double Progress
    {
        get
        {
            lock (_gate) return _shutdown is not null ? 1 : _method.Progress(_context);
        }
    }

    /// <summary>The first trials. A second call returns nothing: the trials exist already.</summary>
    public IReadOnlyList<SearchAction> Start()
    {
        lock (_gate)
        {
            if (_started) return [];
            _started = true;
            return [.. _method.InitialTrials(_context)];
        }
    }

    /// <summary>
    /// Trial <paramref name="trialIndex"/> reported the objective after <paramref name="epoch"/>.
    /// Repeated or older epochs, unknown or ended trials, and reports after shutdown are ignored.
    /// Reaching the target shuts the search down.
    /// </summary>
    public IReadOnlyList<SearchAction> OnValidation(int trialIndex, int epoch, double objective)
    {
        lock (_gate)
        {
            if (_shutdown is not null || !_trials.TryGetValue(trialIndex, out var trial) || trial.Exited) return [];
            if (trial.LastEpoch is { } last && epoch <= last) return [];
            trial.LastEpoch = epoch;
            trial.LastObjective = objective;
            var actions = new List<SearchAction>();
            // A diverged trial reports NaN: it is nobody's best and reaches no target, but the
            // stopping rule sees it, as the worst score there is.
            if (double.IsNaN(objective))
            {
                StopIfRuleSays(trial, epoch, objective, actions);
                return actions;
            }
            if (_sweep.IsBetter(objective, _best))
            {
                _best = objective;
                _bestTrial = trialIndex;
            }
            if (_sweep.ReachesTarget(objective))
            {
                var value = objective.ToString("G6", CultureInfo.InvariantCulture);
                var target = _sweep.Target!.Value.ToString("G6", CultureInfo.InvariantCulture);
                return [Shutdown(new ShutdownSearch($"target {target} reached by trial {trialIndex} ({_sweep.ObjectiveMetric} {value} at epoch {epoch})"))];
            }
            actions.AddRange(_method.OnValidation(_context, trialIndex, epoch, objective));
            StopIfRuleSays(trial, epoch, objective, actions);
            return actions;
        }
    }

    /// <summary>
    /// Stops trial <paramref name="trialIndex"/> (a user's decision): it counts as exited, stopped
    /// early, and the method may create its successor. Nothing for an unknown or ended trial.
    /// </summary>
    public IReadOnlyList<SearchAction> Stop(int trialIndex, string reason)
    {
        lock (_gate)
        {
            if (!_trials.TryGetValue(trialIndex, out var trial) || trial.Exited) return [];
            var actions = new List<SearchAction>();
            StopTrial(trial, reason, actions);
            return actions;
        }
    }

    /// <summary>
    /// Raises the trial budget by <paramref name="more"/> (orch extend) and returns the trials the
    /// method creates for it. A search that ended because every trial had exited opens again; one
    /// that failed, or reached its target, stays ended.
    /// </summary>
    /// <exception cref="InvalidOperationException">The method cannot use more trials, or the search ended for good.</exception>
    public IReadOnlyList<SearchAction> Extend(int more)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(more);
        lock (_gate)
        {
            if (_shutdown is { } ended && (ended.Failed || _best is { } best && _sweep.ReachesTarget(best)))
                throw new InvalidOperationException($"the search has ended for good ({ended.Reason})");
            var before = _shutdown;
            _extraTrials += more;
            _shutdown = null;
            try
            {
                return [.. _method.Extend(_context, more)];
            }
            catch (InvalidOperationException)
            {
                _extraTrials -= more;
                _shutdown = before;
                throw;
            }
        }
    }

    /// <summary>
    /// Every trial now trains <paramref name="extended"/>'s epochs (orch extend --epochs; the same
    /// sweep, <see cref="ValidatedSweep.WithEpochs"/>). The early-stopping rule keeps what it recorded
    /// and gains the rungs that now fit. Of the trials that completed, those in
    /// <paramref name="resumable"/> (their latest checkpoint is kept) train on unless the rule
    /// judges them at a rung they passed and keeps only the better ones there: ASHA keeps the best
    /// 1/η of them. They come back as <see cref="ResumeTrial"/> actions, and a search that ended
    /// because every trial had exited opens again.
    /// </summary>
    /// <exception cref="InvalidOperationException">The search ended for good, or ended and no completed trial can train on.</exception>
    public IReadOnlyList<SearchAction> ExtendEpochs(ValidatedSweep extended, IReadOnlyCollection<int> resumable)
    {
        ArgumentNullException.ThrowIfNull(extended);
        ArgumentNullException.ThrowIfNull(resumable);
        lock (_gate)
        {
            if (_shutdown is { } ended && (ended.Failed || _best is { } best && _sweep.ReachesTarget(best)))
                throw new InvalidOperationException($"the search has ended for good ({ended.Reason})");
            var completed = _trials.Values.Where(t => t.Exited && t.Succeeded && !t.Stopped && resumable.Contains(t.Index)).ToList();
            if (_shutdown is not null && completed.Count == 0)
                throw new InvalidOperationException("no completed trial has a checkpoint to train on from");
            var rule = StoppingRules.For(extended.EarlyStopping);
            if (rule is not null && _rule is not null) rule.Restore(_rule.Snapshot());
            var runs = completed.Select(t => new FinishedRun(t.Index, t.LastEpoch ?? 0, Score(t.LastObjective ?? double.NaN))).ToList();
            var trainOn = rule?.TrainOn(runs) ?? [.. runs.Select(r => r.Trial)];
            _sweep = extended;
            _rule = rule;
            var actions = new List<SearchAction>();
            foreach (var index in trainOn.Order())
            {
                var trial = _trials[index];
                trial.Exited = false;
                trial.Succeeded = false;
                actions.Add(new ResumeTrial(index));
            }
            if (_shutdown is not null && actions.Count > 0) _shutdown = null;
            return actions;
        }
    }

    /// <summary>The sweep as this searcher searches it: the spec, with the epochs orch extend --epochs raised.</summary>
    public ValidatedSweep Spec
    {
        get
        {
            lock (_gate) return _sweep;
        }
    }

    // Rules compare higher-is-better, finite scores: an infinite objective is clamped like NaN
    // is mapped, or a quantile interpolated from −∞ would be NaN and stop nobody.
    private double Score(double objective) => double.IsNaN(objective)
        ? StoppingRules.Worst
        : Math.Clamp(_sweep.Maximize ? objective : -objective, StoppingRules.Worst, -StoppingRules.Worst);

    private void StopIfRuleSays(TrialBook trial, int epoch, double objective, List<SearchAction> actions)
    {
        if (_rule is null || _shutdown is not null || trial.Exited) return;
        if (!_rule.ShouldStop(trial.Index, epoch, Score(objective))) return;
        var value = objective.ToString("G4", CultureInfo.InvariantCulture);
        StopTrial(trial, $"stopped early by {_rule.Name} after epoch {epoch} ({_sweep.ObjectiveMetric} {value})", actions);
    }

    private void StopTrial(TrialBook trial, string reason, List<SearchAction> actions)
    {
        trial.Exited = true;
        trial.Stopped = true;
        actions.Add(new StopTrial(trial.Index) { Reason = reason });
        if (_shutdown is not null) return;
        actions.AddRange(_method.OnTrialExited(_context, trial.Index, TrialExit.Stopped));
        ShutdownIfAllExited(actions);
    }

    private void ShutdownIfAllExited(List<SearchAction> actions)
    {
        if (_shutdown is not null || !_trials.Values.All(t => t.Exited) || actions.OfType<CreateTrial>().Any()) return;
        var stopped = _trials.Values.Count(t => t.Stopped);
        var best = _bestTrial is { } b
            ? $"; best trial {b} ({_sweep.ObjectiveMetric} {_best!.Value.ToString("G6", CultureInfo.InvariantCulture)})"
            : "";
        var early = stopped > 0 ? $", {stopped} stopped early" : "";
        // A sweep without a single result failed, whatever its failure budget allowed.
        var none = _failed == _trials.Count;
        actions.Add(Shutdown(new ShutdownSearch(none
            ? $"all {_trials.Count} trials failed: no result"
            : $"all {_trials.Count} trials ended, {_failed} failed{early}{best}") { Failed = none }));
    }

    /// <summary>
    /// Trial <paramref name="trialIndex"/> ended. A second exit of the same trial, or one after
    /// shutdown, returns nothing. More failures than the sweep's maxFailedTrials, or no trial left
    /// running, shuts the search down.
    /// </summary>
    public IReadOnlyList<SearchAction> OnTrialExited(int trialIndex, bool succeeded)
    {
        lock (_gate)
        {
            if (!_trials.TryGetValue(trialIndex, out var trial) || trial.Exited) return [];
            trial.Exited = true;
            trial.Succeeded = succeeded;
            if (!succeeded) _failed++;
            if (_shutdown is not null) return [];
            if (_failed > _sweep.MaxFailedTrials)
                return [Shutdown(new ShutdownSearch($"{_failed} trials failed, more than search.maxFailedTrials ({_sweep.MaxFailedTrials})") { Failed = true })];
            var actions = new List<SearchAction>(_method.OnTrialExited(_context, trialIndex, succeeded ? TrialExit.Completed : TrialExit.Failed));
            ShutdownIfAllExited(actions);
            return actions;
        }
    }

    /// <summary>The whole state as JSON: trials, counters, the generator's state, the method's own state.</summary>
    public string SaveState()
    {
        lock (_gate)
        {
            var state = new SearcherState
            {
                Version = StateVersion,
                Method = _sweep.Method,
                SpecSha256 = Fingerprint(_sweep),
                Started = _started,
                RandomState = _random.State,
                Failed = _failed,
                ExtraTrials = _extraTrials,
                Best = _best,
                BestTrial = _bestTrial,
                ShutdownReason = _shutdown?.Reason,
                ShutdownFailed = _shutdown?.Failed ?? false,
                Trials = [.. _trials.Values.Select(t => t.Copy())],
                MethodState = _method.Snapshot(),
                StoppingState = _rule?.Snapshot(),
                Prior = _prior,
            };
            return JsonSerializer.Serialize(state, SearcherJsonContext.Default.SearcherState);
        }
    }

    private ShutdownSearch Shutdown(ShutdownSearch action) => _shutdown = action;

    private CreateTrial NewTrial(IReadOnlyDictionary<string, string> parameters)
    {
        if (_trials.Count >= _context.MaxTrials)
            throw new InvalidOperationException($"the {_method.Name} method asked for more than maxTrials ({_context.MaxTrials}) trials");
        var index = _trials.Count;
        _trials[index] = new TrialBook { Index = index };
        return new CreateTrial(index, parameters);
    }

    // Search methods are few and pure, so a switch is the registry here; the coordinator's plugin
    // builder (AddSearchMethods) can wrap this when methods come from other assemblies.
    private static ISearchMethod MethodFor(string method) => method switch
    {
        "grid" => new GridSearch(),
        "random" => new RandomSearch(),
        "tpe" => new Tpe.TpeSearch(),
        _ => throw new ArgumentException($"unknown search method '{method}'", nameof(method)),
    };

    private static string Fingerprint(ValidatedSweep sweep) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(sweep.SpecYaml)));
}

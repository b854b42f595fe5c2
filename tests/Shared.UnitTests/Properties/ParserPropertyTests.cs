using CsCheck;
using Orchestrator.Protocol;
using Orchestrator.Specs;
using Orchestrator.Sweeps;
using Orchestrator.Sweeps.Stopping;

namespace Orchestrator.Shared.UnitTests.Properties;

/// <summary>
/// Properties over generated inputs (CsCheck: a failure is shrunk to the smallest input that
/// shows it): parsers fail only with their own errors, encodings round-trip, and the searcher's
/// state round-trips at any point of any run.
/// </summary>
public sealed class ParserPropertyTests
{
    private static readonly SweepLimits Limits = new(10_000, 16, 1_000);

    /// <summary>YAML-ish text: fragments of real sweep files, keys, punctuation and indentation, shuffled.</summary>
    private static readonly Gen<string> YamlText = Gen.OneOf(
            Gen.OneOf<string>("name: s\n", "trial:\n", "  epochs: 3\n", "parameters:\n", "  optimizer.lr: { min: 0.001, max: 0.1 }\n",
                "search: { method: random, maxTrials: 2 }\n", "search:\n  earlyStopping: { method: asha }\n", "objective: { metric: val_loss }\n",
                "data: { name: fashion-mnist }\n", "model:\n", "  - ", ": ", "{", "}", "[", "]", "&a ", "*a ", "!!int ", "'", "\"", "\t", "\n", "  ", "#"),
            Gen.String[Gen.Char["a-z0-9:{}[],&*!'\" \n-"], 0, 8])
        .Array[0, 24]
        .Select(parts => string.Concat(parts));

    [Fact]
    public void Any_sweep_text_parses_or_fails_with_a_spec_error()
    {
        YamlText.Sample(text =>
        {
            try
            {
                ValidatedSweep.Parse(text, "sweep.yaml", Limits);
            }
            catch (SpecException e)
            {
                Assert.StartsWith("sweep.yaml", e.Message, StringComparison.Ordinal);
            }
        }, iter: 3000);
    }

    [Fact]
    public void Socket_frames_round_trip_every_type_argument_and_step()
    {
        Gen.Select(Gen.UInt, Gen.UInt, Gen.Long).Sample((type, argument, step) =>
        {
            Span<byte> frame = stackalloc byte[GradientSocketFrames.FrameHeaderBytes];
            GradientSocketFrames.WriteFrame(frame, type, argument, step);
            Assert.Equal((type, argument, step), GradientSocketFrames.ReadFrame(frame));
        });
    }

    [Fact]
    public void The_quantile_cut_off_lies_within_the_scores_and_keeps_at_least_the_best()
    {
        Gen.Select(Gen.Double[-1e6, 1e6].Array[1, 40], Gen.Int[2, 6]).Sample((scores, eta) =>
        {
            var cutoff = SuccessiveHalving.Cutoff(scores, 1 - 1.0 / eta)!.Value;
            Assert.InRange(cutoff, scores.Min(), scores.Max());
            Assert.Contains(scores, s => s >= cutoff);
            // At most the best ⌈n/η⌉ lie strictly above it.
            Assert.True(scores.Count(s => s > cutoff) <= (int)Math.Ceiling(scores.Length / (double)eta), $"{scores.Length} scores, η {eta}");
        });
    }

    [Fact]
    public void A_searcher_restored_at_any_point_of_any_run_takes_the_same_actions()
    {
        var sweep = ValidatedSweep.Parse("""
            name: prop
            trial: { epochs: 9 }
            parameters:
              optimizer.lr: { min: 0.001, max: 0.1, distribution: log-uniform }
            search: { method: random, maxTrials: 6, parallelTrials: 6, seed: 5, earlyStopping: { method: asha } }
            """, "prop.yaml", Limits);
        // A run: (trial, epoch-advance, score) reports; the restart point is an index into it.
        var run = Gen.Select(Gen.Int[0, 5], Gen.Double[0, 1]).Array[1, 40];
        Gen.Select(run, Gen.Int[0, 40]).Sample((reports, restartAt) =>
        {
            var straight = Searcher.Create(sweep);
            var restarted = Searcher.Create(sweep);
            straight.Start();
            restarted.Start();
            var epochs = new int[6];
            for (var i = 0; i < reports.Length; i++)
            {
                if (i == restartAt) restarted = Searcher.Restore(sweep, restarted.SaveState());
                var (trial, score) = reports[i];
                epochs[trial] = Math.Min(9, epochs[trial] + 1);
                Assert.Equal(straight.OnValidation(trial, epochs[trial], score), restarted.OnValidation(trial, epochs[trial], score));
            }
            Assert.Equal(straight.SaveState(), restarted.SaveState());
        });
    }
}

using System.Globalization;

namespace Orchestrator.Bench.TpeVsRandom;

/// <summary>A synthetic objective to minimise: the sweep's parameters (YAML lines) and the value at a trial's parameters.</summary>
internal sealed record Objective(string Name, double Optimum, string Parameters, Func<IReadOnlyDictionary<string, string>, double> Evaluate);

internal static class Objectives
{
    // Fields whose values lie in [0, 1) carry the unit-cube coordinates of Branin and Hartmann-3:
    // each is read back as u = (v − min) / (max − min).
    private const string Unit3 = """
          model.dropout: { min: 0.0, max: 0.99 }
          loss.labelSmoothing: { min: 0.0, max: 0.99 }
          optimizer.momentum: { min: 0.0, max: 0.99 }
          optimizer.nesterov: false
        """;

    public static readonly IReadOnlyList<Objective> All =
    [
        new("quadratic-4d-log-cat", 0, """
              optimizer.lr: { min: 1.0e-5, max: 1.0, distribution: log-uniform }
              optimizer.weightDecay: { min: 1.0e-6, max: 1.0e-1, distribution: log-uniform }
              model.dropout: { min: 0.0, max: 0.6 }
              batchSize: { min: 16, max: 512, type: int }
              optimizer.name: { values: [sgd, adam, adamw] }
            """, Quadratic),
        new("branin-2d", 0.397887, """
              model.dropout: { min: 0.0, max: 0.99 }
              loss.labelSmoothing: { min: 0.0, max: 0.99 }
            """, Branin),
        new("hartmann-3d", -3.86278, Unit3, Hartmann3),
    ];

    private static double Get(IReadOnlyDictionary<string, string> p, string path) => double.Parse(p[path], CultureInfo.InvariantCulture);

    private static double Unit(IReadOnlyDictionary<string, string> p, string path) => Get(p, path) / 0.99;

    /// <summary>
    /// A shifted quadratic in the space a practitioner thinks in (decades of lr and weight decay),
    /// each term scaled so that the range's edge costs about 1, plus a penalty per optimizer.
    /// Optimum 0 at lr 10^-2.5, weight decay 10^-4, dropout 0.3, batch 96, adamw.
    /// </summary>
    private static double Quadratic(IReadOnlyDictionary<string, string> p)
    {
        static double Sq(double x) => x * x;
        var penalty = p["optimizer.name"] switch { "adamw" => 0, "adam" => 0.3, _ => 0.8 };
        return Sq((Math.Log10(Get(p, "optimizer.lr")) + 2.5) / 2.5) + Sq((Math.Log10(Get(p, "optimizer.weightDecay")) + 4) / 2.5)
            + Sq((Get(p, "model.dropout") - 0.3) / 0.3) + Sq((Get(p, "batchSize") - 96) / 400) + penalty;
    }

    /// <summary>Branin on x1 ∈ [−5, 10], x2 ∈ [0, 15]; minimum 0.397887 at three points.</summary>
    private static double Branin(IReadOnlyDictionary<string, string> p)
    {
        var x1 = -5 + 15 * Unit(p, "model.dropout");
        var x2 = 15 * Unit(p, "loss.labelSmoothing");
        const double b = 5.1 / (4 * Math.PI * Math.PI), c = 5 / Math.PI, t = 1 / (8 * Math.PI);
        var q = x2 - b * x1 * x1 + c * x1 - 6;
        return q * q + 10 * (1 - t) * Math.Cos(x1) + 10;
    }

    private static readonly double[] HartmannAlpha = [1.0, 1.2, 3.0, 3.2];
    private static readonly double[,] HartmannA = { { 3, 10, 30 }, { 0.1, 10, 35 }, { 3, 10, 30 }, { 0.1, 10, 35 } };
    private static readonly double[,] HartmannP =
    {
        { 0.3689, 0.1170, 0.2673 }, { 0.4699, 0.4387, 0.7470 }, { 0.1091, 0.8732, 0.5547 }, { 0.0381, 0.5743, 0.8828 },
    };

    /// <summary>Hartmann-3 on [0, 1]³; minimum −3.86278 at (0.114614, 0.555649, 0.852547).</summary>
    private static double Hartmann3(IReadOnlyDictionary<string, string> p)
    {
        double[] x = [Unit(p, "model.dropout"), Unit(p, "loss.labelSmoothing"), Unit(p, "optimizer.momentum")];
        var sum = 0.0;
        for (var i = 0; i < 4; i++)
        {
            var e = 0.0;
            for (var j = 0; j < 3; j++) e += HartmannA[i, j] * (x[j] - HartmannP[i, j]) * (x[j] - HartmannP[i, j]);
            sum += HartmannAlpha[i] * Math.Exp(-e);
        }
        return -sum;
    }
}

using Orchestrator.Trials;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Orchestrator.Worker.Training;

/// <summary>Builds the optimiser a trial asks for, over the parameters that train.</summary>
public static class OptimizerFactory
{
    /// <summary>
    /// Call after the model is on its device: <c>module.to(device)</c> replaces Parameter objects,
    /// and an optimiser built before would update the old ones.
    /// </summary>
    public static OptimizerHelper Create(OptimizerSpec o, IEnumerable<Parameter> parameters)
    {
        var trainable = parameters.Where(p => p.requires_grad).ToList();
        if (trainable.Count == 0) throw new InvalidOperationException("the model has no trainable parameters");
        return o.Name switch
        {
            "sgd" => optim.SGD(trainable, o.Lr, o.Momentum, 0, o.WeightDecay, o.Nesterov && o.Momentum > 0),
            "adam" => optim.Adam(trainable, o.Lr, o.Beta1, o.Beta2, o.Eps, o.WeightDecay),
            "adamw" => optim.AdamW(trainable, o.Lr, o.Beta1, o.Beta2, o.Eps, o.WeightDecay),
            "rmsprop" => optim.RMSProp(trainable, o.Lr, o.Alpha, o.Eps, o.WeightDecay, o.Momentum),
            _ => throw new ArgumentException($"unknown optimizer '{o.Name}': {KnownNames.OneOf(KnownNames.Optimizers)}"),
        };
    }

    public static void SetLearningRate(optim.Optimizer optimizer, double lr)
    {
        foreach (var group in optimizer.ParamGroups) group.LearningRate = lr;
    }
}

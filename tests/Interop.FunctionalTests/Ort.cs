using Microsoft.ML.OnnxRuntime;
using static TorchSharp.torch;

namespace Orchestrator.Interop.FunctionalTests;

/// <summary>ONNX Runtime on the CPU, from C#.</summary>
public static class Ort
{
    public static InferenceSession Open(string path)
    {
        using var options = new SessionOptions { IntraOpNumThreads = 2, InterOpNumThreads = 1 };
        return new InferenceSession(path, options);
    }

    /// <summary>Runs the graph on [N, C, H, W] images (any N: the batch dimension is dynamic) and returns the logits.</summary>
    public static float[] Run(InferenceSession session, Tensor images)
    {
        var data = images.contiguous().data<float>().ToArray();
        using var input = OrtValue.CreateTensorValueFromMemory(data, images.shape);
        using var run = new RunOptions();
        using var outputs = session.Run(run, ["input"], [input], ["logits"]);
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    public static float[] Run(string path, Tensor images)
    {
        using var session = Open(path);
        return Run(session, images);
    }
}

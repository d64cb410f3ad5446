// ONNX Runtime backend: three sessions (CPU, or CUDA where the library has its provider), shared by all threads.
// Thread safety: OrtSession::Run is documented as safe to call concurrently on one session, and every call here
// builds its own input and output tensors, so no lock is needed and concurrent requests run in parallel.
#include <onnxruntime_cxx_api.h>

#include <algorithm>
#include <array>
#include <vector>

#include "backend.hpp"
#include "error.hpp"

namespace strsr {
namespace {

std::string format_shape(const std::vector<int64_t>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + (shape[i] < 0 ? "?" : std::to_string(shape[i]));
    return s + "]";
}

std::string format_dims(const std::vector<Dim>& dims) {
    std::string s = "[";
    for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + (dims[i].is_static() ? std::to_string(dims[i].size) : dims[i].name);
    return s + "]";
}

struct Stage {
    std::string name;  // vae_encoder, dit_onestep, vae_decoder
    std::string file;
    Ort::Session session{nullptr};
    std::vector<std::string> input_names;  // in the graph's order
    std::string output_name;
};

// The graph must take exactly the manifest's inputs (names, float32, ranks, fixed sizes) and give its output.
void check_against_manifest(Stage& stage, const GraphInfo& graph) {
    Ort::AllocatorWithDefaultOptions allocator;
    const std::string where = stage.file + ": ";
    if (stage.session.GetInputCount() != graph.inputs.size())
        throw Error(STRSR_ERROR_MANIFEST, where + "graph has " + std::to_string(stage.session.GetInputCount()) +
                                              " inputs, the manifest lists " + std::to_string(graph.inputs.size()));
    for (size_t i = 0; i < stage.session.GetInputCount(); ++i) {
        const std::string name = stage.session.GetInputNameAllocated(i, allocator).get();
        const auto it = graph.inputs.find(name);
        if (it == graph.inputs.end())
            throw Error(STRSR_ERROR_MANIFEST, where + "graph input '" + name + "' is not in the manifest");
        const Ort::TypeInfo type = stage.session.GetInputTypeInfo(i);
        const auto info = type.GetTensorTypeAndShapeInfo();
        if (info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
            throw Error(STRSR_ERROR_MANIFEST, where + "input '" + name + "' is not float32");
        const std::vector<int64_t> shape = info.GetShape();
        bool same = shape.size() == it->second.size();
        for (size_t d = 0; same && d < shape.size(); ++d)
            same = it->second[d].is_static() ? shape[d] == it->second[d].size : true;
        if (!same)
            throw Error(STRSR_ERROR_MANIFEST, where + "input '" + name + "' has shape " + format_shape(shape) +
                                                  " in the graph but " + format_dims(it->second) + " in the manifest");
        stage.input_names.push_back(name);
    }
    if (stage.session.GetOutputCount() < 1)
        throw Error(STRSR_ERROR_MANIFEST, where + "graph has no outputs");
    stage.output_name = stage.session.GetOutputNameAllocated(0, allocator).get();
    if (stage.output_name != graph.outputs.at(0))
        throw Error(STRSR_ERROR_MANIFEST, where + "graph output is '" + stage.output_name + "', the manifest says '" +
                                              graph.outputs.at(0) + "'");
}

class OnnxRuntimeBackend final : public Backend {
public:
    OnnxRuntimeBackend(const std::filesystem::path& dir, const Manifest& manifest, const Tensor& condition,
                       const BackendOptions& options)
        : env_(ORT_LOGGING_LEVEL_WARNING, "strsr"), condition_(condition) {
        const std::vector<std::string> providers = Ort::GetAvailableProviders();
        const bool has_cuda =
            std::find(providers.begin(), providers.end(), "CUDAExecutionProvider") != providers.end();
        if (options.device == STRSR_DEVICE_CUDA && !has_cuda)
            throw Error(STRSR_ERROR_BACKEND,
                        "CUDA requested, but this ONNX Runtime library has no CUDA execution provider "
                        "(link a CUDA build of ONNX Runtime, or use the CPU)");
        Ort::SessionOptions session_options;
        if (options.intra_op_threads > 0) session_options.SetIntraOpNumThreads(options.intra_op_threads);
        if (options.device != STRSR_DEVICE_CPU && has_cuda) {
            OrtCUDAProviderOptions cuda{};
            cuda.device_id = options.device_index;
            session_options.AppendExecutionProvider_CUDA(cuda);
            device_ = "cuda:" + std::to_string(options.device_index);
        } else {
            // On the CPU, ORT's arena keeps every stage's peak and, with memory patterns, allocates the planned
            // block anew from the second run on: the tiny preset's 1024-px tiles peak at 523 MiB after one tile
            // and 1003 MiB after three. Plain allocations without patterns stay at one tile's working set (568 MiB
            // after three) at the same speed, so the memory of a whole image stays that of one tile.
            session_options.DisableCpuMemArena();
            session_options.DisableMemPattern();
        }
        for (size_t i = 0; i < kStages.size(); ++i) {
            Stage& stage = stages_[i];
            stage.name = kStages[i];
            const GraphInfo& graph = manifest.graphs.at(stage.name);
            stage.file = graph.file;
            try {
                stage.session = Ort::Session(env_, (dir / graph.file).c_str(), session_options);
            } catch (const Ort::Exception& e) {
                throw Error(STRSR_ERROR_BACKEND, (dir / graph.file).string() + ": ONNX Runtime cannot load it (" +
                                                     e.what() + ")");
            }
            check_against_manifest(stage, graph);
        }
    }

    const char* name() const override { return "onnxruntime"; }
    std::string device() const override { return device_; }

    Planar run(const Planar& image, const Tensor* noise) const override {
        const Ort::MemoryInfo memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
        // ORT takes non-const buffers for inputs but does not write them; the copies keep this method const.
        std::vector<float> pixels = image.data;
        std::vector<float> condition = condition_.data;
        std::vector<float> eps = noise ? noise->data : std::vector<float>();
        const std::array<int64_t, 4> image_shape = {1, image.channels, image.height, image.width};
        Ort::Value x = Ort::Value::CreateTensor<float>(memory, pixels.data(), pixels.size(), image_shape.data(), 4);
        Feeds encoder_inputs = feeds("image", std::move(x));
        if (noise)
            encoder_inputs.emplace_back("noise", Ort::Value::CreateTensor<float>(memory, eps.data(), eps.size(),
                                                                                 noise->shape.data(),
                                                                                 noise->shape.size()));
        Ort::Value state = run_stage(stages_[0], std::move(encoder_inputs));
        Ort::Value cond = Ort::Value::CreateTensor<float>(memory, condition.data(), condition.size(),
                                                          condition_.shape.data(), condition_.shape.size());
        Feeds dit_inputs = feeds("state", std::move(state));
        dit_inputs.emplace_back("condition", std::move(cond));
        Ort::Value z0 = run_stage(stages_[1], std::move(dit_inputs));
        Ort::Value decoded = run_stage(stages_[2], feeds("state", std::move(z0)));

        const std::vector<int64_t> shape = decoded.GetTensorTypeAndShapeInfo().GetShape();
        if (shape != std::vector<int64_t>{1, image.channels, image.height, image.width})
            throw Error(STRSR_ERROR_BACKEND, "vae_decoder returned shape " + format_shape(shape) + " for input " +
                                                 format_shape({1, image.channels, image.height, image.width}));
        Planar out(image.channels, image.height, image.width);
        const float* values = decoded.GetTensorData<float>();
        std::copy(values, values + out.data.size(), out.data.begin());
        return out;
    }

private:
    using Feeds = std::vector<std::pair<std::string, Ort::Value>>;

    static Feeds feeds(const std::string& name, Ort::Value value) {
        Feeds f;
        f.emplace_back(name, std::move(value));
        return f;
    }

    // Feeds are matched to the graph's inputs by name, whatever order the graph declares them in.
    Ort::Value run_stage(Stage& stage, Feeds inputs) const {
        std::vector<const char*> names;
        std::vector<Ort::Value> values;
        for (const std::string& input : stage.input_names) {
            const auto it = std::find_if(inputs.begin(), inputs.end(), [&](const auto& f) { return f.first == input; });
            if (it == inputs.end())
                throw Error(STRSR_ERROR_MANIFEST, stage.file + ": unexpected input '" + input + "'");
            names.push_back(input.c_str());
            values.push_back(std::move(it->second));
        }
        const char* output = stage.output_name.c_str();
        try {
            std::vector<Ort::Value> result =
                stage.session.Run(Ort::RunOptions{nullptr}, names.data(), values.data(), values.size(), &output, 1);
            return std::move(result.at(0));
        } catch (const Ort::Exception& e) {
            throw Error(STRSR_ERROR_BACKEND, stage.name + " failed in ONNX Runtime: " + e.what());
        }
    }

    Ort::Env env_;
    Tensor condition_;
    // mutable: Ort::Session::Run is a non-const member, yet safe to call concurrently (see the file comment).
    mutable std::array<Stage, 3> stages_;
    std::string device_ = "cpu";
};

}  // namespace

std::unique_ptr<Backend> make_onnxruntime_backend(const std::filesystem::path& dir, const Manifest& manifest,
                                                  const Tensor& condition, const BackendOptions& options) {
    try {
        return std::make_unique<OnnxRuntimeBackend>(dir, manifest, condition, options);
    } catch (const Ort::Exception& e) {
        throw Error(STRSR_ERROR_BACKEND, std::string("ONNX Runtime: ") + e.what());
    }
}

}  // namespace strsr

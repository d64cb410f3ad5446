// TensorRT backend: the three serialized engines the manifest's "tensorrt" section names, run back to back on one
// CUDA stream with the intermediate states kept on the GPU (named tensors, enqueueV3). A sampling export's encoder
// takes the host-drawn noise as a second input, copied in beside the image (and so outside any captured graph).
//
// Thread safety: an IExecutionContext is not safe to share, so each concurrent call leases a Worker (one context
// per engine, its own stream and device buffers) from a pool of at most max_contexts; further callers wait. With
// cuda_graph set, a Worker captures the three enqueues once per tile shape and replays the graph afterwards
// (the tiles of an image mostly share one shape, so replays dominate).
#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <array>
#include <condition_variable>
#include <mutex>
#include <vector>

#include "backend.hpp"
#include "error.hpp"

namespace strsr {
namespace {

void cuda_check(cudaError_t status, const char* call) {
    if (status != cudaSuccess)
        throw Error(STRSR_ERROR_BACKEND, std::string("CUDA: ") + call + " failed: " + cudaGetErrorString(status));
}
#define STRSR_CUDA(call) cuda_check((call), #call)

// Keeps TensorRT's last error so exceptions can say what went wrong; the library prints nothing itself.
class Logger final : public nvinfer1::ILogger {
public:
    void log(Severity severity, nvinfer1::AsciiChar const* message) noexcept override {
        if (severity > Severity::kERROR) return;
        std::lock_guard<std::mutex> lock(mutex_);
        last_ = message;
    }
    std::string last() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return last_.empty() ? "no message" : last_;
    }

private:
    mutable std::mutex mutex_;
    std::string last_;
};

template <typename T>
struct Deleter {
    void operator()(T* p) const { delete p; }  // TensorRT 10 objects are released with delete
};
template <typename T>
using Owned = std::unique_ptr<T, Deleter<T>>;

std::string format_dims(const nvinfer1::Dims& d) {
    std::string s = "[";
    for (int i = 0; i < d.nbDims; ++i) s += (i ? ", " : "") + (d.d[i] < 0 ? "?" : std::to_string(d.d[i]));
    return s + "]";
}

nvinfer1::Dims make_dims(std::initializer_list<int64_t> sizes) {
    nvinfer1::Dims d{};
    d.nbDims = int32_t(sizes.size());
    int i = 0;
    for (int64_t s : sizes) d.d[i++] = s;
    return d;
}

size_t volume(const nvinfer1::Dims& d) {
    size_t n = 1;
    for (int i = 0; i < d.nbDims; ++i) n *= size_t(d.d[i] < 0 ? 0 : d.d[i]);
    return n;
}

class DeviceBuffer {
public:
    DeviceBuffer() = default;
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    ~DeviceBuffer() { cudaFree(data_); }
    // Grows to hold `count` floats; returns true when the address changed (a captured graph is then stale).
    bool reserve(size_t count) {
        if (count <= capacity_) return false;
        cudaFree(data_);
        data_ = nullptr;
        capacity_ = 0;
        STRSR_CUDA(cudaMalloc(&data_, count * sizeof(float)));
        capacity_ = count;
        return true;
    }
    float* get() const { return static_cast<float*>(data_); }

private:
    void* data_ = nullptr;
    size_t capacity_ = 0;
};

struct Engine {
    std::string stage, file;
    Owned<nvinfer1::ICudaEngine> engine;
    std::vector<std::string> inputs;
    std::string output;
};

// The engine must take exactly the manifest's inputs (float32, same ranks and fixed sizes) and give its output.
void check_engine(Engine& e, const GraphInfo& graph) {
    const std::string where = e.file + ": ";
    for (int32_t i = 0; i < e.engine->getNbIOTensors(); ++i) {
        const char* name = e.engine->getIOTensorName(i);
        const nvinfer1::Dims dims = e.engine->getTensorShape(name);
        if (e.engine->getTensorDataType(name) != nvinfer1::DataType::kFLOAT)
            throw Error(STRSR_ERROR_MANIFEST, where + "tensor '" + name + "' is not float32 (export keeps I/O fp32)");
        if (e.engine->getTensorIOMode(name) == nvinfer1::TensorIOMode::kOUTPUT) {
            if (name != graph.outputs.at(0))
                throw Error(STRSR_ERROR_MANIFEST, where + "engine output is '" + name + "', the manifest says '" +
                                                      graph.outputs.at(0) + "'");
            e.output = name;
            continue;
        }
        const auto it = graph.inputs.find(name);
        if (it == graph.inputs.end())
            throw Error(STRSR_ERROR_MANIFEST, where + "engine input '" + name + "' is not in the manifest");
        bool same = size_t(dims.nbDims) == it->second.size();
        for (int d = 0; same && d < dims.nbDims; ++d)
            same = !it->second[size_t(d)].is_static() || dims.d[d] < 0 || dims.d[d] == it->second[size_t(d)].size;
        if (!same)
            throw Error(STRSR_ERROR_MANIFEST, where + "input '" + name + "' has shape " + format_dims(dims) +
                                                  " in the engine, which the manifest's graph does not match");
        e.inputs.push_back(name);
    }
    if (e.inputs.size() != graph.inputs.size() || e.output.empty())
        throw Error(STRSR_ERROR_MANIFEST, where + "engine inputs/outputs differ from the manifest's graph");
}

// One concurrent caller's resources: a context per engine, a stream, device buffers, an optional CUDA graph.
struct Worker {
    std::array<Owned<nvinfer1::IExecutionContext>, 3> contexts;
    cudaStream_t stream = nullptr;
    DeviceBuffer image, noise, state, z0, decoded, condition;
    cudaGraphExec_t graph = nullptr;
    int graph_height = -1, graph_width = -1;  // the tile shape the bindings (and graph) were made for

    ~Worker() {
        if (graph) cudaGraphExecDestroy(graph);
        if (stream) cudaStreamDestroy(stream);
    }
    void drop_graph() {
        if (graph) cudaGraphExecDestroy(graph);
        graph = nullptr;
        graph_height = graph_width = -1;
    }
};

class TensorRtBackend final : public Backend {
public:
    TensorRtBackend(const std::filesystem::path& dir, const Manifest& manifest, const Tensor& condition,
                    const BackendOptions& options)
        : condition_(condition), options_(options), samples_(manifest.latent.samples) {
        if (!manifest.tensorrt)
            throw Error(STRSR_ERROR_MANIFEST, (dir / "manifest.json").string() +
                                                  ": no 'tensorrt' section (build the engines with strsr-export --trt)");
        if (options.device == STRSR_DEVICE_CPU)
            throw Error(STRSR_ERROR_INVALID_ARGUMENT, "the TensorRT backend runs on CUDA devices, not the CPU");
        check_versions(*manifest.tensorrt);
        runtime_.reset(nvinfer1::createInferRuntime(logger_));
        if (!runtime_) throw Error(STRSR_ERROR_BACKEND, "TensorRT: cannot create a runtime (" + logger_.last() + ")");
        for (size_t i = 0; i < kStages.size(); ++i) {
            Engine& e = engines_[i];
            e.stage = kStages[i];
            e.file = manifest.tensorrt->engines.at(e.stage);
            const std::string blob = read_file(
                verified_file(dir, manifest, e.file, "TensorRT engine '" + e.stage + "'", options.verify_files));
            e.engine.reset(runtime_->deserializeCudaEngine(blob.data(), blob.size()));
            if (!e.engine)
                throw Error(STRSR_ERROR_BACKEND, (dir / e.file).string() + ": TensorRT cannot load the engine (" +
                                                     logger_.last() + ")");
            check_engine(e, manifest.graphs.at(e.stage));
        }
    }

    const char* name() const override { return "tensorrt"; }
    std::string device() const override { return "cuda:" + std::to_string(options_.device_index); }

    Planar run(const Planar& image, const Tensor* noise) const override {
        if (bool(noise) != samples_)
            throw Error(STRSR_ERROR_INTERNAL, samples_ ? "this export's encoder needs its noise input"
                                                       : "this export's encoder takes no noise input");
        Lease lease(*this);
        Worker& w = *lease.worker;
        STRSR_CUDA(cudaSetDevice(options_.device_index));
        const nvinfer1::Dims image_dims = make_dims({1, image.channels, image.height, image.width});
        set_input(w, 0, "image", image_dims);
        if (noise)
            set_input(w, 0, "noise", make_dims({noise->shape.at(0), noise->shape.at(1), noise->shape.at(2),
                                                 noise->shape.at(3)}));
        const nvinfer1::Dims state_dims = w.contexts[0]->getTensorShape(engines_[0].output.c_str());
        set_input(w, 1, "state", state_dims);
        set_input(w, 1, "condition", make_dims({condition_.shape.at(0), condition_.shape.at(1), condition_.shape.at(2)}));
        const nvinfer1::Dims z0_dims = w.contexts[1]->getTensorShape(engines_[1].output.c_str());
        set_input(w, 2, "state", z0_dims);
        const nvinfer1::Dims out_dims = w.contexts[2]->getTensorShape(engines_[2].output.c_str());
        if (volume(out_dims) != image.data.size())
            throw Error(STRSR_ERROR_BACKEND, "vae_decoder engine gives " + format_dims(out_dims) + " for input " +
                                                 format_dims(image_dims));

        bool moved = w.image.reserve(image.data.size());
        if (noise) moved |= w.noise.reserve(noise->data.size());
        moved |= w.state.reserve(volume(state_dims));
        moved |= w.z0.reserve(volume(z0_dims));
        moved |= w.decoded.reserve(image.data.size());
        if (w.condition.reserve(condition_.data.size()))
            STRSR_CUDA(cudaMemcpy(w.condition.get(), condition_.data.data(), condition_.data.size() * sizeof(float),
                                  cudaMemcpyHostToDevice));
        if (moved) w.drop_graph();
        bind(w, 0, {{"image", w.image.get()}, {engines_[0].output, w.state.get()}});
        if (noise) bind(w, 0, {{"noise", w.noise.get()}});
        bind(w, 1, {{"state", w.state.get()}, {"condition", w.condition.get()}, {engines_[1].output, w.z0.get()}});
        bind(w, 2, {{"state", w.z0.get()}, {engines_[2].output, w.decoded.get()}});

        STRSR_CUDA(cudaMemcpyAsync(w.image.get(), image.data.data(), image.data.size() * sizeof(float),
                                   cudaMemcpyHostToDevice, w.stream));
        if (noise)
            STRSR_CUDA(cudaMemcpyAsync(w.noise.get(), noise->data.data(), noise->data.size() * sizeof(float),
                                       cudaMemcpyHostToDevice, w.stream));
        const bool same_shape = w.graph_height == image.height && w.graph_width == image.width;
        if (options_.cuda_graph && w.graph && same_shape) {
            STRSR_CUDA(cudaGraphLaunch(w.graph, w.stream));
        } else {
            enqueue_all(w);
            // Capture after a plain run at this shape: TensorRT may allocate or tune on a shape's first enqueue.
            if (options_.cuda_graph) capture(w);
            w.graph_height = image.height;
            w.graph_width = image.width;
        }
        Planar out(image.channels, image.height, image.width);
        STRSR_CUDA(cudaMemcpyAsync(out.data.data(), w.decoded.get(), out.data.size() * sizeof(float),
                                   cudaMemcpyDeviceToHost, w.stream));
        STRSR_CUDA(cudaStreamSynchronize(w.stream));
        return out;
    }

private:
    struct Lease {
        explicit Lease(const TensorRtBackend& b) : backend(b), worker(b.acquire()) {}
        ~Lease() { backend.release(std::move(worker)); }
        const TensorRtBackend& backend;
        std::unique_ptr<Worker> worker;
    };

    void check_versions(const TensorRtInfo& info) const {
        const int32_t v = getInferLibVersion();
        const std::string have = std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." +
                                 std::to_string(v % 100);
        if (have.rfind(info.version, 0) != 0)
            throw Error(STRSR_ERROR_MANIFEST, "the engines were built with TensorRT " + info.version +
                                                  ", this process has TensorRT " + have + " (rebuild the engines)");
        int count = 0;
        STRSR_CUDA(cudaGetDeviceCount(&count));
        if (options_.device_index < 0 || options_.device_index >= count)
            throw Error(STRSR_ERROR_INVALID_ARGUMENT, "CUDA device " + std::to_string(options_.device_index) +
                                                          " does not exist (" + std::to_string(count) + " visible)");
        cudaDeviceProp prop{};
        STRSR_CUDA(cudaGetDeviceProperties(&prop, options_.device_index));
        const std::string capability = std::to_string(prop.major) + "." + std::to_string(prop.minor);
        if (capability != info.compute_capability)
            throw Error(STRSR_ERROR_MANIFEST, "the engines were built for compute capability " +
                                                  info.compute_capability + ", but " + prop.name + " is " +
                                                  capability + " (rebuild the engines on this GPU)");
    }

    std::unique_ptr<Worker> acquire() const {
        std::unique_lock<std::mutex> lock(pool_mutex_);
        pool_ready_.wait(lock, [&] { return !idle_.empty() || created_ < options_.max_contexts; });
        if (!idle_.empty()) {
            std::unique_ptr<Worker> w = std::move(idle_.back());
            idle_.pop_back();
            return w;
        }
        ++created_;
        lock.unlock();
        try {
            return make_worker();
        } catch (...) {
            std::lock_guard<std::mutex> relock(pool_mutex_);
            --created_;
            pool_ready_.notify_one();
            throw;
        }
    }

    void release(std::unique_ptr<Worker> w) const {
        std::lock_guard<std::mutex> lock(pool_mutex_);
        idle_.push_back(std::move(w));
        pool_ready_.notify_one();
    }

    std::unique_ptr<Worker> make_worker() const {
        STRSR_CUDA(cudaSetDevice(options_.device_index));
        auto w = std::make_unique<Worker>();
        STRSR_CUDA(cudaStreamCreateWithFlags(&w->stream, cudaStreamNonBlocking));
        for (size_t i = 0; i < engines_.size(); ++i) {
            w->contexts[i].reset(engines_[i].engine->createExecutionContext());
            if (!w->contexts[i])
                throw Error(STRSR_ERROR_BACKEND, engines_[i].file + ": cannot create an execution context (" +
                                                     logger_.last() + ")");
        }
        return w;
    }

    void set_input(Worker& w, size_t stage, const std::string& tensor, const nvinfer1::Dims& dims) const {
        if (!w.contexts[stage]->setInputShape(tensor.c_str(), dims)) {
            const nvinfer1::ICudaEngine& e = *engines_[stage].engine;
            throw Error(STRSR_ERROR_BACKEND,
                        engines_[stage].file + ": shape " + format_dims(dims) + " for '" + tensor +
                            "' is outside the engine's optimisation profile [" +
                            format_dims(e.getProfileShape(tensor.c_str(), 0, nvinfer1::OptProfileSelector::kMIN)) +
                            " .. " +
                            format_dims(e.getProfileShape(tensor.c_str(), 0, nvinfer1::OptProfileSelector::kMAX)) +
                            "] (choose a tile size the engines were built for)");
        }
    }

    void bind(Worker& w, size_t stage, std::initializer_list<std::pair<std::string, float*>> tensors) const {
        for (const auto& [tensor, address] : tensors)
            if (!w.contexts[stage]->setTensorAddress(tensor.c_str(), address))
                throw Error(STRSR_ERROR_BACKEND, engines_[stage].file + ": cannot bind '" + tensor + "' (" +
                                                     logger_.last() + ")");
    }

    void enqueue_all(Worker& w) const {
        for (size_t i = 0; i < engines_.size(); ++i)
            if (!w.contexts[i]->enqueueV3(w.stream))
                throw Error(STRSR_ERROR_BACKEND, engines_[i].stage + " failed in TensorRT (" + logger_.last() + ")");
    }

    // Records the three enqueues (not the copies) for replay; on failure the worker simply runs without a graph.
    void capture(Worker& w) const {
        w.drop_graph();
        cudaGraph_t graph = nullptr;
        STRSR_CUDA(cudaStreamBeginCapture(w.stream, cudaStreamCaptureModeThreadLocal));
        bool ok = true;
        for (auto& context : w.contexts) ok = ok && context->enqueueV3(w.stream);
        const cudaError_t ended = cudaStreamEndCapture(w.stream, &graph);
        if (!ok || ended != cudaSuccess || cudaGraphInstantiate(&w.graph, graph, 0) != cudaSuccess) w.graph = nullptr;
        if (graph) cudaGraphDestroy(graph);
        cudaGetLastError();  // a failed capture must not poison the next CUDA call's status
    }

    Logger logger_;
    Owned<nvinfer1::IRuntime> runtime_;
    std::array<Engine, 3> engines_;
    Tensor condition_;
    BackendOptions options_;
    bool samples_ = false;  // the encoder takes "noise" beside "image"

    mutable std::mutex pool_mutex_;
    mutable std::condition_variable pool_ready_;
    mutable std::vector<std::unique_ptr<Worker>> idle_;
    mutable int created_ = 0;
};

}  // namespace

std::unique_ptr<Backend> make_tensorrt_backend(const std::filesystem::path& dir, const Manifest& manifest,
                                               const Tensor& condition, const BackendOptions& options) {
    return std::make_unique<TensorRtBackend>(dir, manifest, condition, options);
}

}  // namespace strsr

// Which backends this build has; factories for the missing ones fail with the CMake option that adds them.
#include "backend.hpp"
#include "error.hpp"

namespace strsr {

bool have_onnxruntime() { return STRSR_HAVE_ONNXRUNTIME; }
bool have_tensorrt() { return STRSR_HAVE_TENSORRT; }

#if !STRSR_HAVE_ONNXRUNTIME
std::unique_ptr<Backend> make_onnxruntime_backend(const std::filesystem::path&, const Manifest&, const Tensor&,
                                                  const BackendOptions&) {
    throw Error(STRSR_ERROR_BACKEND,
                "this strsr_runtime was built without ONNX Runtime (configure with -DSTRSR_WITH_ONNXRUNTIME=ON)");
}
#endif

#if !STRSR_HAVE_TENSORRT
std::unique_ptr<Backend> make_tensorrt_backend(const std::filesystem::path&, const Manifest&, const Tensor&,
                                               const BackendOptions&) {
    throw Error(STRSR_ERROR_BACKEND,
                "this strsr_runtime was built without TensorRT (configure with -DSTRSR_WITH_TENSORRT=ON)");
}
#endif

}  // namespace strsr

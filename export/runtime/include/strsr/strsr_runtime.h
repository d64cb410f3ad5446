/* strsr_runtime.h: the C API of the strsr x4 super-resolution runtime, for services in any language.
 *
 * A session loads an `strsr-export` folder (manifest.json, the three graphs, condition.safetensors) into one
 * backend and upscales RGB buffers x4 with the same pipeline as `strsr-upscale` (the official StrSR tiling):
 * bicubic x4, one reflect pad of the upsampled image to a multiple of 16 (and of the export's pixel multiple),
 * tiles at strides of tile - overlap with the last one flush with the edge, VAE encode -> one-step DiT -> VAE
 * decode per tile, the outputs blended with linspace ramps in the model's [-1, 1], clamped once and cropped.
 *
 * The folder is read as hostile input (the rules of strsr/manifest.py): every file it names stays inside it (symlinks
 * included), and every file the session opens must be recorded in the manifest's "files" with its size, which is
 * checked before the file is opened, and its sha256, checked when strsr_options.verify is set. A manifest without
 * "files" (an older strsr-export) is refused.
 *
 * Sampling exports (manifest "latent": {"mode": "sample"}) take the VAE posterior noise as an encoder input. The
 * runtime draws it from its own generator (std::mt19937_64 and Marsaglia's polar method, see src/noise.hpp),
 * seeded with `strsr_options.seed` afresh for every image and drawn tile by tile in row-major order: the same seed
 * gives the same image on every platform, but the draws are not PyTorch's, so a sampling export's output is not
 * strsr-upscale's (exports with "mode": "mode" match it).
 *
 * Errors: every call returns a status; on failure strsr_last_error() gives a one-line message for the calling
 * thread (thread-local, like errno). No C++ exception crosses this boundary and no input aborts the process.
 *
 * Threads: a session is immutable after creation. Any number of threads may call strsr_upscale* on one session
 * at once (ONNX Runtime runs concurrent requests on its shared sessions; TensorRT hands each concurrent call its
 * own execution context and CUDA stream from a pool). Destroy a session only once no call on it is running.
 */
#ifndef STRSR_RUNTIME_H
#define STRSR_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define STRSR_API __declspec(dllexport)
#elif defined(__GNUC__)
#define STRSR_API __attribute__((visibility("default")))
#else
#define STRSR_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define STRSR_SCALE 4

/* The largest input strsr upscales: width * height at most 2^24 pixels (e.g. 4096 x 4096), so at most 2^28 output
 * pixels, strsr-upscale's limit (strsr.pipeline.MAX_OUTPUT_PIXELS). strsr_upscale* refuse larger sizes and
 * strsr-infer's PNG and JPEG readers refuse such files from their headers, before decoding ("too large"). */
#define STRSR_MAX_INPUT_PIXELS (1 << 24)

/* The enums have int32_t as their underlying type in C++ (and C23), so every int a caller passes is a value of the
 * type, never undefined behaviour, and each function validates it (STRSR_ERROR_INVALID_ARGUMENT for an unknown
 * one). In older C the *_MAX_ENUM members keep them 32 bits wide. */
#if defined(__cplusplus) || (defined(__STDC_VERSION__) && __STDC_VERSION__ >= 202311L)
#define STRSR_ENUM(name) enum name : int32_t
#else
#define STRSR_ENUM(name) enum name
#endif

typedef STRSR_ENUM(strsr_status) {
    STRSR_OK = 0,
    STRSR_ERROR_INVALID_ARGUMENT = 1, /* null pointer, zero or too large size, wrong buffer size, bad option or enum
                                       * value, NaN or infinite input */
    STRSR_ERROR_IO = 2,               /* a file of the export folder is missing or unreadable */
    STRSR_ERROR_MANIFEST = 3,         /* manifest or condition file malformed, or not matching the engines/GPU */
    STRSR_ERROR_BACKEND = 4,          /* the inference backend failed or is not compiled in */
    STRSR_ERROR_OUT_OF_MEMORY = 5,
    STRSR_ERROR_INTERNAL = 6,
    STRSR_STATUS_MAX_ENUM = 0x7fffffff
} strsr_status;

typedef STRSR_ENUM(strsr_backend) {
    STRSR_BACKEND_AUTO = 0, /* TensorRT when compiled in and the manifest lists engines, else ONNX Runtime */
    STRSR_BACKEND_ONNXRUNTIME = 1,
    STRSR_BACKEND_TENSORRT = 2,
    STRSR_BACKEND_MAX_ENUM = 0x7fffffff
} strsr_backend;

typedef STRSR_ENUM(strsr_device) {
    STRSR_DEVICE_AUTO = 0, /* ONNX Runtime: CUDA when its CUDA provider is available, else CPU */
    STRSR_DEVICE_CPU = 1,
    STRSR_DEVICE_CUDA = 2,
    STRSR_DEVICE_MAX_ENUM = 0x7fffffff
} strsr_device;

typedef STRSR_ENUM(strsr_pixel_format) {
    STRSR_RGB8 = 1, /* interleaved R, G, B; one uint8 each */
    STRSR_RGB16 = 2, /* interleaved R, G, B; one native-endian uint16 each */
    STRSR_PIXEL_FORMAT_MAX_ENUM = 0x7fffffff
} strsr_pixel_format;

typedef STRSR_ENUM(strsr_rounding) {
    STRSR_ROUNDING_FLOOR = 0,   /* truncate float32(value * peak), as strsr-upscale and the official scripts */
    STRSR_ROUNDING_NEAREST = 1, /* round value * peak (in double) half to even */
    STRSR_ROUNDING_MAX_ENUM = 0x7fffffff
} strsr_rounding;

/* Initialise with strsr_options_init, then set fields: new fields are only ever appended, with defaults there. */
typedef struct strsr_options {
    strsr_backend backend;
    strsr_device device;
    int device_index;      /* CUDA device ordinal */
    int tile;              /* output tile size in pixels, a multiple of the pixel multiple; 0: the manifest's */
    int overlap;           /* output overlap in pixels, 0 <= overlap < tile; -1: 64 (strsr-upscale's) */
    int intra_op_threads;  /* ONNX Runtime CPU threads per session; 0: its default */
    int cuda_graph;        /* TensorRT: capture a CUDA graph per context for repeated tile shapes (0/1) */
    int max_contexts;      /* TensorRT: execution contexts (concurrent calls) per session; 0: 2 */
    strsr_rounding rounding; /* float -> RGB8/RGB16 samples in strsr_upscale; default floor */
    uint64_t seed;         /* sampling exports: seeds each image's posterior noise; default 0 */
    int verify;            /* 1: also check the sha256 of every export file against the manifest at load (reads
                            * each file once more); 0 (default): sizes only. Either way a file the manifest does
                            * not record, or of another size, is refused (STRSR_ERROR_MANIFEST). */
} strsr_options;

typedef struct strsr_info {
    const char* preset;    /* the strings live as long as the session */
    const char* family;
    const char* precision;
    const char* backend;   /* "onnxruntime" or "tensorrt" */
    const char* device;    /* e.g. "cpu", "cuda:0" */
    int pixel_multiple;
    int tile;              /* in effect for this session */
    int overlap;
    double t1;
} strsr_info;

typedef struct strsr_session strsr_session;

/* Defaults: auto backend and device, the manifest's tile, overlap 64, floor rounding, seed 0. */
STRSR_API void strsr_options_init(strsr_options* options);

/* Load `engine_dir`. `options` may be NULL (defaults). On success *session is set, else left NULL. */
STRSR_API strsr_status strsr_session_create(const char* engine_dir, const strsr_options* options,
                                            strsr_session** session);
STRSR_API void strsr_session_destroy(strsr_session* session);

/* Upscale a tightly packed width x height image into `output` (4*width x 4*height, same format), samples made
 * integers by the session's rounding. width, height >= 1 with width * height <= STRSR_MAX_INPUT_PIXELS;
 * input_bytes and output_bytes must be exactly width*height*3*(1 or 2) and 16 times that. Memory beyond the two
 * buffers: one band of tiles (tile height x padded output width) in float32 and the backend's working set. */
STRSR_API strsr_status strsr_upscale(strsr_session* session, strsr_pixel_format format, const void* input,
                                     size_t input_bytes, int width, int height, void* output, size_t output_bytes);

/* The same on planar float32: input (3, height, width) in [0, 1] (NaN and infinite values are refused), output
 * (3, 4*height, 4*width) in [0, 1]. Sizes are counts of floats. */
STRSR_API strsr_status strsr_upscale_planar(strsr_session* session, const float* input, size_t input_count,
                                            int width, int height, float* output, size_t output_count);

STRSR_API strsr_status strsr_session_info(const strsr_session* session, strsr_info* info);

/* The manifest.json text the session was loaded from; valid as long as the session. NULL on a NULL session. */
STRSR_API const char* strsr_session_manifest(const strsr_session* session);

/* The calling thread's message for its last failed call ("" if none). Valid until its next call here. */
STRSR_API const char* strsr_last_error(void);

STRSR_API const char* strsr_status_name(strsr_status status);
STRSR_API const char* strsr_version(void);

#ifdef __cplusplus
}
#endif

#endif /* STRSR_RUNTIME_H */

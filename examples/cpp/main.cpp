// vggish_embed: a WAV file in, VGGish embeddings out, through vggish.e2e.onnx
// (or vggish.e2e.pca.onnx for the reference's uint8 post-processed embeddings).
//
//   vggish_embed MODEL.onnx AUDIO.wav
//
// Reads AUDIO with libsndfile as float samples in [-1, 1], averages the
// channels to mono, cuts 0.975 s windows (15,600 samples) every 0.96 s
// (15,360 samples) as the reference does, runs them through the model in one
// batch and prints one CSV line per window: its start time in seconds, then
// the 128 values. The audio must already be at the model's sample rate
// (16 kHz, read from the model's own metadata): resample it first, for
// example `sox in.wav -r 16000 out.wav` (the Python package resamples itself).
#include <onnxruntime_cxx_api.h>
#include <sndfile.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

constexpr int64_t kWindowSamples = 15600;  // 400 + 95 * 160: 96 frames of 25 ms every 10 ms
constexpr int64_t kHopSamples = 15360;     // 0.96 s
constexpr int64_t kEmbeddingSize = 128;

// Mono float samples of a sound file, and its sample rate.
std::vector<float> ReadMono(const std::string& path, int* sample_rate) {
  SF_INFO info{};
  SNDFILE* file = sf_open(path.c_str(), SFM_READ, &info);
  if (file == nullptr) throw std::runtime_error(path + ": " + sf_strerror(nullptr));
  if (info.channels < 1) {
    sf_close(file);
    throw std::runtime_error(path + ": has no channels");
  }
  std::vector<float> interleaved(static_cast<size_t>(info.frames) * info.channels);
  const sf_count_t read = sf_readf_float(file, interleaved.data(), info.frames);
  sf_close(file);
  std::vector<float> mono(static_cast<size_t>(read));
  for (sf_count_t i = 0; i < read; ++i) {
    float sum = 0.0f;
    for (int c = 0; c < info.channels; ++c) sum += interleaved[i * info.channels + c];
    mono[i] = sum / static_cast<float>(info.channels);
  }
  *sample_rate = info.samplerate;
  return mono;
}

// The model's metadata_props value for key, or fallback when absent.
std::string Metadata(const Ort::Session& session, const char* key, const std::string& fallback) {
  Ort::AllocatorWithDefaultOptions allocator;
  Ort::ModelMetadata metadata = session.GetModelMetadata();
  Ort::AllocatedStringPtr value = metadata.LookupCustomMetadataMapAllocated(key, allocator);
  return value ? std::string(value.get()) : fallback;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s MODEL.onnx AUDIO.wav\n", argv[0]);
    return 2;
  }
  try {
    Ort::Env env(ORT_LOGGING_LEVEL_WARNING, "vggish_embed");
    Ort::SessionOptions options;
    Ort::Session session(env, argv[1], options);
    const int model_rate = std::stoi(Metadata(session, "frontend.sample_rate_hz", "16000"));
    std::fprintf(stderr, "%s: %s (pretrained: %s)\n", argv[1], Metadata(session, "description", "?").c_str(),
                 Metadata(session, "pretrained", "?").c_str());

    int sample_rate = 0;
    const std::vector<float> samples = ReadMono(argv[2], &sample_rate);
    if (sample_rate != model_rate) {
      throw std::runtime_error(std::string(argv[2]) + ": sample rate " + std::to_string(sample_rate) +
                               " Hz, the model takes " + std::to_string(model_rate) + " Hz; resample it first");
    }
    const int64_t count = static_cast<int64_t>(samples.size()) < kWindowSamples
                              ? 0 : 1 + (static_cast<int64_t>(samples.size()) - kWindowSamples) / kHopSamples;
    if (count == 0) throw std::runtime_error(std::string(argv[2]) + ": shorter than one 0.975 s window");
    std::vector<float> windows(static_cast<size_t>(count * kWindowSamples));
    for (int64_t w = 0; w < count; ++w) {
      std::copy_n(samples.begin() + w * kHopSamples, kWindowSamples, windows.begin() + w * kWindowSamples);
    }

    Ort::AllocatorWithDefaultOptions allocator;
    Ort::AllocatedStringPtr input_name = session.GetInputNameAllocated(0, allocator);
    Ort::AllocatedStringPtr output_name = session.GetOutputNameAllocated(0, allocator);
    const std::array<int64_t, 2> shape{count, kWindowSamples};
    Ort::MemoryInfo memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
    Ort::Value input = Ort::Value::CreateTensor<float>(memory, windows.data(), windows.size(), shape.data(), shape.size());
    const char* input_names[] = {input_name.get()};
    const char* output_names[] = {output_name.get()};
    std::vector<Ort::Value> outputs = session.Run(Ort::RunOptions{nullptr}, input_names, &input, 1, output_names, 1);

    const ONNXTensorElementDataType type = outputs[0].GetTensorTypeAndShapeInfo().GetElementType();
    for (int64_t w = 0; w < count; ++w) {
      std::printf("%.2f", static_cast<double>(w * kHopSamples) / model_rate);
      for (int64_t d = 0; d < kEmbeddingSize; ++d) {
        if (type == ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8) {
          std::printf(",%u", static_cast<unsigned>(outputs[0].GetTensorData<uint8_t>()[w * kEmbeddingSize + d]));
        } else {
          std::printf(",%.9g", static_cast<double>(outputs[0].GetTensorData<float>()[w * kEmbeddingSize + d]));
        }
      }
      std::printf("\n");
    }
  } catch (const std::exception& error) {
    std::fprintf(stderr, "error: %s\n", error.what());
    return 1;
  }
  return 0;
}

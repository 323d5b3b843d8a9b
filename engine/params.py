"""VGGish's fixed parameters, as in the reference's ``vggish_params.py``.

Units are given in each name or comment: samples at 16 kHz, seconds, frames of
10 ms, mel bands.
"""

SAMPLE_RATE = 16000            # Hz; every input is resampled to this
STFT_WINDOW_SECONDS = 0.025
STFT_HOP_SECONDS = 0.010
WINDOW_LENGTH_SAMPLES = 400    # round(SAMPLE_RATE * STFT_WINDOW_SECONDS)
HOP_LENGTH_SAMPLES = 160       # round(SAMPLE_RATE * STFT_HOP_SECONDS)
FFT_LENGTH = 512               # next power of two of the window
NUM_BINS = FFT_LENGTH // 2 + 1 # 257 rfft bins
NUM_BANDS = 64                 # mel bands
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.01              # log(mel + LOG_OFFSET), natural log
NUM_FRAMES = 96                # frames per example
EXAMPLE_WINDOW_SECONDS = 0.96
EXAMPLE_HOP_SECONDS = 0.96
# Samples one example needs: 400 + 95 * 160 = 15,600 (0.975 s).
EXAMPLE_SAMPLES = WINDOW_LENGTH_SAMPLES + (NUM_FRAMES - 1) * HOP_LENGTH_SAMPLES
EMBEDDING_SIZE = 128

# Post-processing (the released PCA file's layout and the 8-bit quantization).
PCA_EIGEN_VECTORS_NAME = "pca_eigen_vectors"  # [128, 128], rows are output dims
PCA_MEANS_NAME = "pca_means"                  # [128, 1]
QUANTIZE_MIN_VAL = -2.0
QUANTIZE_MAX_VAL = +2.0

# Names in the TF graph and in our ONNX files.
TF_INPUT_TENSOR = "vggish/input_features:0"
TF_OUTPUT_TENSOR = "vggish/embedding:0"
ONNX_FEATURES = "features"     # float32 [N, 96, 64] log-mel examples
ONNX_WAVEFORM = "waveform"     # float32 [N, 15600] 16 kHz windows
ONNX_EMBEDDING = "embedding"   # float32 [N, 128]

// Python bindings and argument checks of the upfirdn2d CUDA op.
//
// upfirdn2d(x, kernel, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1) resamples
// every (H, W) plane of a contiguous NCHW tensor: per axis it inserts up-1 zeros after every
// sample, pads with pad0 / pad1 zeros (negative values crop), applies a true 2-D convolution
// with `kernel` (kernel flipped, 'valid' extent) and keeps every down-th sample. The output
// size per axis is (n * up + pad0 + pad1 - k + down) / down (floor division).
//
// Types: x may be float64, float32, float16 or bfloat16. The kernel must be given in the
// accumulation type of x: float64 for float64 inputs, float32 otherwise. Sums are accumulated
// in that type and the output has the dtype of x.

#include <torch/extension.h>

#include <cstdint>
#include <cstdlib>
#include <limits>

// Defined in upfirdn2d_kernel.cu. Arguments are checked by upfirdn2d() below.
torch::Tensor upfirdn2d_cuda_launch(const torch::Tensor& x, const torch::Tensor& kernel,
                                    int up_x, int up_y, int down_x, int down_y,
                                    int pad_x0, int pad_y0, int out_h, int out_w);

namespace {

// Output length along one axis; checks that all intermediate index arithmetic fits in int.
int64_t output_length(const char* axis, int64_t n, int64_t up, int64_t down, int64_t pad0,
                      int64_t pad1, int64_t k) {
  TORCH_CHECK(up >= 1 && down >= 1, "upfirdn2d: up_", axis, " and down_", axis,
              " must be >= 1, got ", up, " and ", down);
  constexpr int64_t int_max = std::numeric_limits<int>::max();
  TORCH_CHECK(n <= int_max && up <= int_max && down <= int_max && std::llabs(pad0) <= int_max &&
                  std::llabs(pad1) <= int_max && k <= int_max,
              "upfirdn2d: sizes along ", axis, " are too large");
  const int64_t bound = n * up + std::llabs(pad0) + std::llabs(pad1) + k + down;
  TORCH_CHECK(bound <= int_max, "upfirdn2d: sizes along ", axis,
              " are too large");
  const int64_t span = n * up + pad0 + pad1 - k;  // last valid filter start position
  TORCH_CHECK(span >= 0, "upfirdn2d: empty output along ", axis, " (length ", n, ", up ", up,
              ", pads ", pad0, ", ", pad1, ", kernel size ", k, ")");
  return span / down + 1;  // == (span + down) / down with span >= 0
}

}  // namespace

torch::Tensor upfirdn2d(const torch::Tensor& x, const torch::Tensor& kernel, int64_t up_x,
                        int64_t up_y, int64_t down_x, int64_t down_y, int64_t pad_x0,
                        int64_t pad_x1, int64_t pad_y0, int64_t pad_y1) {
  TORCH_CHECK(x.is_cuda(), "upfirdn2d: x must be a CUDA tensor");
  TORCH_CHECK(x.dim() == 4, "upfirdn2d: x must have shape (N, C, H, W), got ", x.sizes());
  TORCH_CHECK(x.is_contiguous(), "upfirdn2d: x must be contiguous");
  const auto dtype = x.scalar_type();
  TORCH_CHECK(dtype == at::kDouble || dtype == at::kFloat || dtype == at::kHalf ||
                  dtype == at::kBFloat16,
              "upfirdn2d: x must be float64, float32, float16 or bfloat16, got ", dtype);

  TORCH_CHECK(kernel.device() == x.device(), "upfirdn2d: kernel must be on the device of x");
  TORCH_CHECK(kernel.dim() == 2, "upfirdn2d: kernel must be 2-D, got ", kernel.sizes());
  TORCH_CHECK(kernel.numel() > 0, "upfirdn2d: kernel must not be empty");
  TORCH_CHECK(kernel.is_contiguous(), "upfirdn2d: kernel must be contiguous");
  const auto kernel_dtype = dtype == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK(kernel.scalar_type() == kernel_dtype, "upfirdn2d: kernel must be ", kernel_dtype,
              " for ", dtype, " inputs, got ", kernel.scalar_type());

  const int64_t out_h =
      output_length("y", x.size(2), up_y, down_y, pad_y0, pad_y1, kernel.size(0));
  const int64_t out_w =
      output_length("x", x.size(3), up_x, down_x, pad_x0, pad_x1, kernel.size(1));

  return upfirdn2d_cuda_launch(x, kernel, static_cast<int>(up_x), static_cast<int>(up_y),
                               static_cast<int>(down_x), static_cast<int>(down_y),
                               static_cast<int>(pad_x0), static_cast<int>(pad_y0),
                               static_cast<int>(out_h), static_cast<int>(out_w));
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("upfirdn2d", &upfirdn2d,
        "Upsample, pad, FIR-filter (true convolution) and downsample every plane of an NCHW "
        "tensor (CUDA)",
        py::arg("x"), py::arg("kernel"), py::arg("up_x"), py::arg("up_y"), py::arg("down_x"),
        py::arg("down_y"), py::arg("pad_x0"), py::arg("pad_x1"), py::arg("pad_y0"),
        py::arg("pad_y1"));
}

// Python bindings and argument checks of the fused bias + leaky ReLU CUDA op.
//
// fused_bias_act(x, bias, negative_slope, scale):
//     y = leaky_relu(x + bias, negative_slope) * scale
// with bias (C,) broadcast along dim 1 of x (any rank >= 2); an empty `bias` means no bias.
//
// fused_bias_act_grad(grad_y, ref, negative_slope, scale):
//     grad_x = grad_y * scale * (ref > 0 ? 1 : negative_slope)
// where `ref` must have the sign of the pre-activation x + bias wherever it is non-zero, e.g.
// the pre-activation itself or, when scale > 0 and negative_slope >= 0, the forward output y.
//
// Types: float64, float32, float16 or bfloat16, the same for all tensor arguments; half types
// are computed in float32. All tensors must be contiguous and on the same CUDA device.

#include <torch/extension.h>

// Defined in fused_bias_act_kernel.cu. Arguments are checked by the functions below.
torch::Tensor fused_bias_act_cuda_launch(const torch::Tensor& x, const torch::Tensor& bias,
                                         double negative_slope, double scale);
torch::Tensor fused_bias_act_grad_cuda_launch(const torch::Tensor& grad_y,
                                              const torch::Tensor& ref, double negative_slope,
                                              double scale);

namespace {

void check_input(const torch::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.is_cuda(), op, ": ", name, " must be a CUDA tensor");
  TORCH_CHECK(t.is_contiguous(), op, ": ", name, " must be contiguous");
  const auto dtype = t.scalar_type();
  TORCH_CHECK(dtype == at::kDouble || dtype == at::kFloat || dtype == at::kHalf ||
                  dtype == at::kBFloat16,
              op, ": ", name, " must be float64, float32, float16 or bfloat16, got ", dtype);
}

void check_like(const torch::Tensor& t, const torch::Tensor& x, const char* op,
                const char* name) {
  TORCH_CHECK(t.device() == x.device(), op, ": ", name, " must be on the device of the input");
  TORCH_CHECK(t.scalar_type() == x.scalar_type(), op, ": ", name,
              " must have the dtype of the input (", x.scalar_type(), "), got ",
              t.scalar_type());
}

}  // namespace

torch::Tensor fused_bias_act(const torch::Tensor& x, const torch::Tensor& bias,
                             double negative_slope, double scale) {
  check_input(x, "fused_bias_act", "x");
  if (bias.numel() > 0) {
    check_input(bias, "fused_bias_act", "bias");
    check_like(bias, x, "fused_bias_act", "bias");
    TORCH_CHECK(x.dim() >= 2 && bias.dim() == 1 && bias.size(0) == x.size(1),
                "fused_bias_act: bias must have shape (C,) for an input of shape (N, C, ...), "
                "got ",
                bias.sizes(), " and ", x.sizes());
  }
  return fused_bias_act_cuda_launch(x, bias, negative_slope, scale);
}

torch::Tensor fused_bias_act_grad(const torch::Tensor& grad_y, const torch::Tensor& ref,
                                  double negative_slope, double scale) {
  check_input(grad_y, "fused_bias_act_grad", "grad_y");
  check_input(ref, "fused_bias_act_grad", "ref");
  check_like(ref, grad_y, "fused_bias_act_grad", "ref");
  TORCH_CHECK(ref.sizes() == grad_y.sizes(),
              "fused_bias_act_grad: ref and grad_y must have the same shape, got ", ref.sizes(),
              " and ", grad_y.sizes());
  return fused_bias_act_grad_cuda_launch(grad_y, ref, negative_slope, scale);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("fused_bias_act", &fused_bias_act,
        "leaky_relu(x + bias[channel], negative_slope) * scale (CUDA)", py::arg("x"),
        py::arg("bias"), py::arg("negative_slope"), py::arg("scale"));
  m.def("fused_bias_act_grad", &fused_bias_act_grad,
        "grad_y * scale * (ref > 0 ? 1 : negative_slope) (CUDA)", py::arg("grad_y"),
        py::arg("ref"), py::arg("negative_slope"), py::arg("scale"));
}

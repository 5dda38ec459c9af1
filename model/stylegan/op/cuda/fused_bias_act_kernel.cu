// CUDA kernels of the fused bias + leaky ReLU op: one thread per element, grid-stride loops.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cstdint>
#include <limits>

namespace {

constexpr int kThreadsPerBlock = 256;

// y[i] = leaky_relu(x[i] + bias[c], slope) * scale with c = (i / inner) % channels, the index
// along dim 1 of x. bias == nullptr means no bias.
template <typename scalar_t, typename index_t>
__global__ void fused_bias_act_kernel(const scalar_t* __restrict__ x,
                                      const scalar_t* __restrict__ bias,
                                      scalar_t* __restrict__ y, const index_t total,
                                      const index_t inner, const index_t channels,
                                      const at::opmath_type<scalar_t> negative_slope,
                                      const at::opmath_type<scalar_t> scale) {
  using acc_t = at::opmath_type<scalar_t>;
  const index_t stride = static_cast<index_t>(blockDim.x) * gridDim.x;
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    acc_t v = static_cast<acc_t>(x[i]);
    if (bias != nullptr) {
      v += static_cast<acc_t>(bias[(i / inner) % channels]);
    }
    y[i] = static_cast<scalar_t>((v > acc_t(0) ? v : v * negative_slope) * scale);
  }
}

// grad_x[i] = grad_y[i] * (ref[i] > 0 ? scale : scale * negative_slope).
template <typename scalar_t, typename index_t>
__global__ void fused_bias_act_grad_kernel(const scalar_t* __restrict__ grad_y,
                                           const scalar_t* __restrict__ ref,
                                           scalar_t* __restrict__ grad_x, const index_t total,
                                           const at::opmath_type<scalar_t> positive_gain,
                                           const at::opmath_type<scalar_t> negative_gain) {
  using acc_t = at::opmath_type<scalar_t>;
  const index_t stride = static_cast<index_t>(blockDim.x) * gridDim.x;
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const acc_t gain = static_cast<acc_t>(ref[i]) > acc_t(0) ? positive_gain : negative_gain;
    grad_x[i] = static_cast<scalar_t>(static_cast<acc_t>(grad_y[i]) * gain);
  }
}

// Grid size for a grid-stride loop over `total` elements on the device of `t`: one block per
// kThreadsPerBlock elements, at most enough to fill the device four times.
int64_t grid_size(const at::Tensor& t, int64_t total) {
  int sm_count = 0;
  int threads_per_sm = 0;
  const int device = t.get_device();
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device));
  C10_CUDA_CHECK(
      cudaDeviceGetAttribute(&threads_per_sm, cudaDevAttrMaxThreadsPerMultiProcessor, device));
  const int64_t max_blocks =
      static_cast<int64_t>(sm_count) * std::max(threads_per_sm / kThreadsPerBlock, 1) * 4;
  return std::min((total + kThreadsPerBlock - 1) / kThreadsPerBlock, max_blocks);
}

// Whether a grid-stride loop over `total` elements with `blocks` blocks can use int32 indices
// (no index, including i + stride, exceeds INT32_MAX).
bool fits_int32(int64_t total, int64_t blocks) {
  return total <= std::numeric_limits<int32_t>::max() - blocks * kThreadsPerBlock;
}

}  // namespace

at::Tensor fused_bias_act_cuda_launch(const at::Tensor& x, const at::Tensor& bias,
                                      double negative_slope, double scale) {
  const c10::cuda::CUDAGuard device_guard(x.device());
  at::Tensor y = at::empty_like(x);
  const int64_t total = x.numel();
  if (total == 0) {
    return y;
  }
  const bool has_bias = bias.numel() > 0;
  const int64_t channels = has_bias ? x.size(1) : 1;
  const int64_t inner = has_bias ? x.numel() / (x.size(0) * x.size(1)) : 1;
  const int64_t blocks = grid_size(x, total);
  const dim3 grid(static_cast<unsigned int>(blocks));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();

  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::ScalarType::Half, at::ScalarType::BFloat16, x.scalar_type(), "fused_bias_act_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const scalar_t* bias_ptr = has_bias ? bias.data_ptr<scalar_t>() : nullptr;
        if (fits_int32(total, blocks)) {
          fused_bias_act_kernel<scalar_t, int32_t><<<grid, kThreadsPerBlock, 0, stream>>>(
              x.data_ptr<scalar_t>(), bias_ptr, y.data_ptr<scalar_t>(),
              static_cast<int32_t>(total), static_cast<int32_t>(inner),
              static_cast<int32_t>(channels), static_cast<acc_t>(negative_slope),
              static_cast<acc_t>(scale));
        } else {
          fused_bias_act_kernel<scalar_t, int64_t><<<grid, kThreadsPerBlock, 0, stream>>>(
              x.data_ptr<scalar_t>(), bias_ptr, y.data_ptr<scalar_t>(), total, inner, channels,
              static_cast<acc_t>(negative_slope), static_cast<acc_t>(scale));
        }
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return y;
}

at::Tensor fused_bias_act_grad_cuda_launch(const at::Tensor& grad_y, const at::Tensor& ref,
                                           double negative_slope, double scale) {
  const c10::cuda::CUDAGuard device_guard(grad_y.device());
  at::Tensor grad_x = at::empty_like(grad_y);
  const int64_t total = grad_y.numel();
  if (total == 0) {
    return grad_x;
  }
  const int64_t blocks = grid_size(grad_y, total);
  const dim3 grid(static_cast<unsigned int>(blocks));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();

  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::ScalarType::Half, at::ScalarType::BFloat16, grad_y.scalar_type(),
      "fused_bias_act_grad_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const acc_t positive_gain = static_cast<acc_t>(scale);
        const acc_t negative_gain = static_cast<acc_t>(scale * negative_slope);
        if (fits_int32(total, blocks)) {
          fused_bias_act_grad_kernel<scalar_t, int32_t><<<grid, kThreadsPerBlock, 0, stream>>>(
              grad_y.data_ptr<scalar_t>(), ref.data_ptr<scalar_t>(),
              grad_x.data_ptr<scalar_t>(), static_cast<int32_t>(total), positive_gain,
              negative_gain);
        } else {
          fused_bias_act_grad_kernel<scalar_t, int64_t><<<grid, kThreadsPerBlock, 0, stream>>>(
              grad_y.data_ptr<scalar_t>(), ref.data_ptr<scalar_t>(),
              grad_x.data_ptr<scalar_t>(), total, positive_gain, negative_gain);
        }
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return grad_x;
}

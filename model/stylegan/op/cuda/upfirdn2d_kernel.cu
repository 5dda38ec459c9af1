// CUDA kernel of upfirdn2d: upsample (zero insertion), pad, FIR filter (true convolution),
// downsample, computed directly in one pass over the output.
//
// One thread computes one output sample. Along each axis, with input length n, up factor u,
// down factor d, leading pad p0 and kernel length k, output sample o reads the padded,
// upsampled signal at positions o*d + j for taps j = 0..k-1 and weights position o*d + j with
// kernel[k-1-j] (the flip makes it a true convolution). Relative to the unpadded upsampled
// signal that position is q0 + j with q0 = o*d - p0; it holds input sample s when
// q0 + j == s*u and is zero otherwise. So only the input samples s with 0 <= s < n and
// 0 <= s*u - q0 < k contribute, i.e. ceil(q0/u) <= s <= floor((q0+k-1)/u), each with tap
// j = s*u - q0 and kernel index k-1-j, which decreases by u from one s to the next.

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

struct UpFirDn2dParams {
  int in_h, in_w;
  int out_h, out_w;
  int kernel_h, kernel_w;
  int up_x, up_y;
  int down_x, down_y;
  int pad_x0, pad_y0;
};

// Floor of a / b for b > 0 (C++ division truncates towards zero).
__device__ __forceinline__ int floor_div(int a, int b) {
  const int q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

// The input samples [begin, end) that output sample `o` reads along one axis, and the kernel
// index applied to sample `begin` (see the derivation at the top of the file).
struct AxisTaps {
  int begin, end, first_tap;
};

__device__ __forceinline__ AxisTaps axis_taps(int o, int n, int up, int down, int pad0, int k) {
  const int q0 = o * down - pad0;
  AxisTaps taps;
  taps.begin = max(-floor_div(-q0, up), 0);          // ceil(q0 / up), clamped to the input
  taps.end = min(floor_div(q0 + k - 1, up) + 1, n);  // floor((q0 + k - 1) / up) + 1, clamped
  taps.first_tap = k - 1 - (taps.begin * up - q0);
  return taps;
}

// x: (planes, in_h, in_w), y: (planes, out_h, out_w), kernel: (kernel_h, kernel_w).
// index_t is int32_t when every index into x and y fits, int64_t otherwise.
template <typename scalar_t, typename index_t>
__global__ void upfirdn2d_kernel(const scalar_t* __restrict__ x,
                                 const at::opmath_type<scalar_t>* __restrict__ kernel,
                                 scalar_t* __restrict__ y, const UpFirDn2dParams p,
                                 const index_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const index_t stride = static_cast<index_t>(blockDim.x) * gridDim.x;
  for (index_t idx = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += stride) {
    const int ox = static_cast<int>(idx % p.out_w);
    const index_t row = idx / p.out_w;
    const int oy = static_cast<int>(row % p.out_h);
    const index_t plane = row / p.out_h;

    const AxisTaps ty = axis_taps(oy, p.in_h, p.up_y, p.down_y, p.pad_y0, p.kernel_h);
    const AxisTaps tx = axis_taps(ox, p.in_w, p.up_x, p.down_x, p.pad_x0, p.kernel_w);

    const scalar_t* x_plane = x + plane * (static_cast<index_t>(p.in_h) * p.in_w);
    acc_t acc = 0;
    for (int sy = ty.begin, ky = ty.first_tap; sy < ty.end; ++sy, ky -= p.up_y) {
      const scalar_t* x_row = x_plane + static_cast<index_t>(sy) * p.in_w;
      const acc_t* k_row = kernel + ky * p.kernel_w;
      for (int sx = tx.begin, kx = tx.first_tap; sx < tx.end; ++sx, kx -= p.up_x) {
        acc += static_cast<acc_t>(x_row[sx]) * k_row[kx];
      }
    }
    y[idx] = static_cast<scalar_t>(acc);
  }
}

template <typename scalar_t, typename index_t>
void launch(const at::Tensor& x, const at::Tensor& kernel, at::Tensor& y,
            const UpFirDn2dParams& params, int64_t total, int64_t blocks) {
  using acc_t = at::opmath_type<scalar_t>;
  upfirdn2d_kernel<scalar_t, index_t>
      <<<static_cast<unsigned int>(blocks), kThreadsPerBlock, 0,
         c10::cuda::getCurrentCUDAStream()>>>(x.data_ptr<scalar_t>(), kernel.data_ptr<acc_t>(),
                                             y.data_ptr<scalar_t>(), params,
                                             static_cast<index_t>(total));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// How many blocks of kThreadsPerBlock threads the device of `t` can hold at once.
int64_t max_resident_blocks(const at::Tensor& t) {
  int sm_count = 0;
  int threads_per_sm = 0;
  const int device = t.get_device();
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device));
  C10_CUDA_CHECK(
      cudaDeviceGetAttribute(&threads_per_sm, cudaDevAttrMaxThreadsPerMultiProcessor, device));
  return static_cast<int64_t>(sm_count) * std::max(threads_per_sm / kThreadsPerBlock, 1);
}

}  // namespace

at::Tensor upfirdn2d_cuda_launch(const at::Tensor& x, const at::Tensor& kernel, int up_x,
                                    int up_y, int down_x, int down_y, int pad_x0, int pad_y0,
                                    int out_h, int out_w) {
  const c10::cuda::CUDAGuard device_guard(x.device());
  at::Tensor y = at::empty({x.size(0), x.size(1), out_h, out_w}, x.options());
  const int64_t total = y.numel();
  if (total == 0) {
    return y;
  }

  UpFirDn2dParams params;
  params.in_h = static_cast<int>(x.size(2));
  params.in_w = static_cast<int>(x.size(3));
  params.out_h = out_h;
  params.out_w = out_w;
  params.kernel_h = static_cast<int>(kernel.size(0));
  params.kernel_w = static_cast<int>(kernel.size(1));
  params.up_x = up_x;
  params.up_y = up_y;
  params.down_x = down_x;
  params.down_y = down_y;
  params.pad_x0 = pad_x0;
  params.pad_y0 = pad_y0;

  // A grid-stride loop over the outputs, with enough blocks to fill the device a few times.
  const int64_t blocks =
      std::min((total + kThreadsPerBlock - 1) / kThreadsPerBlock, max_resident_blocks(x) * 4);
  // 32-bit indexing is safe when no index, including idx + stride, can exceed INT32_MAX.
  const int64_t index_limit = std::numeric_limits<int32_t>::max() - blocks * kThreadsPerBlock;
  const bool use_int32 = total <= index_limit && x.numel() <= index_limit;

  AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16,
                                  x.scalar_type(), "upfirdn2d_cuda", [&] {
                                    if (use_int32) {
                                      launch<scalar_t, int32_t>(x, kernel, y, params, total,
                                                                blocks);
                                    } else {
                                      launch<scalar_t, int64_t>(x, kernel, y, params, total,
                                                                blocks);
                                    }
                                  });
  return y;
}

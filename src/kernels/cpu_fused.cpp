// One-pass CPU kernels: RMSNorm and rotary embedding, forward and backward, rows split
// over ATen's thread pool. The arithmetic per element is that of the ATen compositions they
// replace (same products and sums), so results differ only where a reduction sums in another
// order (RMSNorm's mean of squares, the weight gradient).
#include "polar/kernels/cpu_fused.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

#include "polar/common/error.h"

namespace polar::kernels {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

constexpr int64_t kGrain = 64;  // rows per task: enough work to pay for a thread hand-off

int64_t rows_of(const Tensor& x) { return x.numel() / x.size(-1); }

struct RmsNorm : torch::autograd::Function<RmsNorm> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x_in, const Tensor& w, double eps) {
    const Tensor x = x_in.contiguous();
    const int64_t h = x.size(-1), rows = rows_of(x);
    Tensor y = torch::empty_like(x), rstd = torch::empty({rows}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rms_norm_cpu", [&] {
      const scalar_t *px = x.data_ptr<scalar_t>(), *pw = w.data_ptr<scalar_t>();
      scalar_t *py = y.data_ptr<scalar_t>(), *pr = rstd.data_ptr<scalar_t>();
      at::parallel_for(0, rows, kGrain, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          const scalar_t* xr = px + r * h;
          scalar_t ss = 0;
          for (int64_t i = 0; i < h; ++i) ss += xr[i] * xr[i];
          const scalar_t inv = scalar_t(1) / std::sqrt(ss / scalar_t(h) + scalar_t(eps));
          pr[r] = inv;
          for (int64_t i = 0; i < h; ++i) py[r * h + i] = pw[i] * (xr[i] * inv);
        }
      });
    });
    ctx->save_for_backward({x, w, rstd});
    return y;
  }

  // n = x * rstd; dx = rstd * (dn - n * mean(dn * n)) with dn = dy * w; dw = sum over rows dy * n.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &x = saved[0], &w = saved[1], &rstd = saved[2];
    const Tensor dy = grads[0].contiguous();
    const int64_t h = x.size(-1), rows = rows_of(x);
    Tensor dx = torch::empty_like(x);
    const int64_t tasks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), rows));
    Tensor dw_parts = torch::zeros({tasks, h}, x.options());  // one partial sum per task
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rms_norm_cpu_backward", [&] {
      const scalar_t *px = x.data_ptr<scalar_t>(), *pw = w.data_ptr<scalar_t>(),
                     *pr = rstd.data_ptr<scalar_t>(), *pdy = dy.data_ptr<scalar_t>();
      scalar_t *pdx = dx.data_ptr<scalar_t>(), *pdw = dw_parts.data_ptr<scalar_t>();
      const int64_t per_task = (rows + tasks - 1) / tasks;
      at::parallel_for(0, tasks, 1, [&](int64_t t_begin, int64_t t_end) {
        for (int64_t t = t_begin; t < t_end; ++t) {
          scalar_t* dw_t = pdw + t * h;
          for (int64_t r = t * per_task; r < std::min(rows, (t + 1) * per_task); ++r) {
            const scalar_t *xr = px + r * h, *dyr = pdy + r * h;
            const scalar_t inv = pr[r];
            scalar_t dot = 0;  // sum dn * n
            for (int64_t i = 0; i < h; ++i) {
              const scalar_t n = xr[i] * inv;
              dot += dyr[i] * pw[i] * n;
              dw_t[i] += dyr[i] * n;
            }
            const scalar_t mean = dot / scalar_t(h);
            for (int64_t i = 0; i < h; ++i)
              pdx[r * h + i] = inv * (dyr[i] * pw[i] - xr[i] * inv * mean);
          }
        }
      });
    });
    return {dx, dw_parts.sum(0), Tensor()};
  }
};

// out[i] = x[i] c[i] - x[i+m] s[i], out[i+m] = x[i+m] c[i+m] + x[i] s[i+m] (m = D/2); the
// backward is the transposed rotation: dx[i] = dy[i] c[i] + dy[i+m] s[i+m],
// dx[i+m] = dy[i+m] c[i+m] - dy[i] s[i].
template <typename scalar_t, bool kBackward>
void rope_rows(const Tensor& in, const Tensor& cos, const Tensor& sin, Tensor& out) {
  const int64_t n = in.size(0), heads = in.size(1), d = in.size(2), m = d / 2;
  const scalar_t *px = in.data_ptr<scalar_t>(), *pc = cos.data_ptr<scalar_t>(),
                 *ps = sin.data_ptr<scalar_t>();
  scalar_t* po = out.data_ptr<scalar_t>();
  at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const scalar_t *c = pc + t * d, *s = ps + t * d;
      for (int64_t hd = 0; hd < heads; ++hd) {
        const scalar_t* x = px + (t * heads + hd) * d;
        scalar_t* o = po + (t * heads + hd) * d;
        for (int64_t i = 0; i < m; ++i) {
          if (kBackward) {
            o[i] = x[i] * c[i] + x[i + m] * s[i + m];
            o[i + m] = x[i + m] * c[i + m] - x[i] * s[i];
          } else {
            o[i] = x[i] * c[i] - x[i + m] * s[i];
            o[i + m] = x[i + m] * c[i + m] + x[i] * s[i + m];
          }
        }
      }
    }
  });
}

struct Rope : torch::autograd::Function<Rope> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& cos,
                        const Tensor& sin) {
    const Tensor xc = x.contiguous();
    Tensor out = torch::empty_like(xc);
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rope_cpu",
                               [&] { rope_rows<scalar_t, false>(xc, cos, sin, out); });
    ctx->save_for_backward({cos, sin});
    return out;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor dy = grads[0].contiguous();
    Tensor dx = torch::empty_like(dy);
    AT_DISPATCH_FLOATING_TYPES(dy.scalar_type(), "rope_cpu_backward",
                               [&] { rope_rows<scalar_t, true>(dy, saved[0], saved[1], dx); });
    return {dx, Tensor(), Tensor()};
  }
};

}  // namespace

bool cpu_fused_available(const Tensor& x) {
  return x.defined() && x.device().is_cpu() &&
         (x.scalar_type() == torch::kFloat || x.scalar_type() == torch::kDouble);
}

Tensor rms_norm_cpu(const Tensor& x, const Tensor& weight, double eps) {
  POLAR_CHECK(cpu_fused_available(x) && weight.scalar_type() == x.scalar_type() &&
                  weight.dim() == 1 && weight.size(0) == x.size(-1) && weight.is_contiguous(),
              "rms_norm_cpu: needs a CPU fp32/fp64 x and a contiguous weight of its last "
              "dimension and dtype, got ",
              x.sizes(), " ", x.scalar_type(), " and ", weight.sizes(), " ", weight.scalar_type());
  return RmsNorm::apply(x, weight, eps);
}

Tensor rope_cpu(const Tensor& x, const Tensor& cos, const Tensor& sin) {
  POLAR_CHECK(cpu_fused_available(x) && x.dim() == 3 && x.size(2) % 2 == 0 &&
                  cos.sizes() == torch::IntArrayRef({x.size(0), x.size(2)}) &&
                  sin.sizes() == cos.sizes() && cos.scalar_type() == x.scalar_type() &&
                  sin.scalar_type() == x.scalar_type() && cos.is_contiguous() &&
                  sin.is_contiguous(),
              "rope_cpu: needs a CPU fp32/fp64 x (N, heads, D), D even, and contiguous cos/sin "
              "(N, D) of its dtype, got ",
              x.sizes(), ", ", cos.sizes(), ", ", sin.sizes());
  return Rope::apply(x, cos, sin);
}

}  // namespace polar::kernels

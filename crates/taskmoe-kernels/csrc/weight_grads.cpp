// taskmoe-kernels: weight gradients of a grouped linear accumulated in place, group by group,
// for the Rust side in src/weight_grads.rs.
//
// A grouped linear `y[rows of g] = x[rows of g] @ w[g] + b[g]` under plain autograd gets the
// gradient of its stacked weight as one new `[G, d_in, d_out]` tensor per call (zero for the
// groups without rows), which the leaf's AccumulateGrad then adds to `.grad`: two full passes
// and a full-size buffer per call, however few groups had rows. Here the linear runs on the
// detached weights and without bias (autograd then computes only the input's gradient), and
// `WeightGradTap` adds the bias to its output in the forward and, in the backward, adds
// `x_g^T dy_g` and `sum(dy_g)` straight into `w.grad[g]` and `b.grad[g]` for the groups that
// have rows, with one in-place GEMM each (the gradient
// accumulation fusion of Megatron-LM's linear layers, per expert). Nothing is computed,
// allocated or written for an empty group once `.grad` exists; the first call on a parameter
// without a gradient allocates a zero one, as AccumulateGrad would.
//
// Conventions: every function that can fail returns NULL on success or a malloc'd,
// NUL-terminated message the caller frees with tmk_free_error. Tensors cross the boundary as
// `at::Tensor*` (tch's C_tensor); returned tensors are `new`ed here and owned by the caller.

#include <cstdlib>
#include <cstring>
#include <exception>
#include <optional>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

namespace {

char* message(const std::string& text) {
  char* out = static_cast<char*>(std::malloc(text.size() + 1));
  if (out != nullptr) std::memcpy(out, text.c_str(), text.size() + 1);
  return out;
}

template <typename F>
char* guarded(const char* op, F&& body) {
  try {
    body();
    return nullptr;
  } catch (const std::exception& e) {
    return message(std::string(op) + " failed: " + e.what());
  } catch (...) {
    return message(std::string(op) + " failed with an unknown C++ exception");
  }
}

// The gradient of `param`, made a zero tensor of its shape first if it has none.
at::Tensor& grad_of(at::Tensor& param) {
  at::Tensor& grad = param.mutable_grad();
  if (!grad.defined()) grad = at::zeros_like(param, at::MemoryFormat::Contiguous);
  return grad;
}

// forward: `y + b[row_group]`, the bias of each row's group added to `y` (the grouped
// linear's output without bias, computed on detached weights); a copy of `y` without bias.
// backward: passes the gradient through unchanged and, for every group g with rows, adds
// `x_g^T dy_g` to `w.grad[g]` and the column sums of `dy_g` to `b.grad[g]`; returns no
// gradient for `x` (it reaches `x` through `y`), `w` or `b` (already accumulated).
struct WeightGradTap : public torch::autograd::Function<WeightGradTap> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& y,
                            const at::Tensor& x, const at::Tensor& w,
                            const std::optional<at::Tensor>& b, const at::Tensor& row_group,
                            std::vector<int64_t> counts) {
    ctx->save_for_backward({x, w, b.value_or(at::Tensor())});
    ctx->saved_data["counts"] = counts;
    if (!b.has_value()) return y.clone();
    return y + b->index_select(0, row_group);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    at::Tensor dy = grads[0];
    auto saved = ctx->get_saved_variables();
    at::Tensor x = saved[0];
    at::Tensor w = saved[1];
    at::Tensor b = saved[2];
    auto counts = ctx->saved_data["counts"].toIntVector();
    if (dy.defined()) {
      at::NoGradGuard no_grad;
      at::Tensor& gw = grad_of(w);
      at::Tensor* gb = b.defined() ? &grad_of(b) : nullptr;
      int64_t start = 0;
      for (size_t g = 0; g < counts.size(); ++g) {
        int64_t n = counts[g];
        if (n == 0) continue;
        at::Tensor dy_g = dy.narrow(0, start, n);
        gw.select(0, static_cast<int64_t>(g)).addmm_(x.narrow(0, start, n).t(), dy_g);
        if (gb != nullptr) gb->select(0, static_cast<int64_t>(g)).add_(dy_g.sum(0));
        start += n;
      }
    }
    // Contiguous: libtorch's grouped GEMM refuses a broadcast gradient in its backward.
    return {dy.defined() ? dy.contiguous() : dy, at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor()};
  }
};

}  // namespace

extern "C" {

void tmk_free_error(char* e) { std::free(e); }

// 1 when `t` is a leaf of the autograd graph (a parameter, or a tensor without history).
int tmk_is_leaf(at::Tensor* t) { return t->is_leaf() ? 1 : 0; }

// 1 when autograd records operations on this thread.
int tmk_grad_enabled() { return at::GradMode::is_enabled() ? 1 : 0; }

// `WeightGradTap` on `y`, the grouped linear of `x` with `w` without bias, over `num_groups`
// groups of `counts[g]` consecutive rows; `b` (the bias, may be NULL) and `row_group` (each
// row's group, int64 on y's device; may be NULL, then built from the counts) for its forward.
char* tmk_weight_grad_tap(at::Tensor* y, at::Tensor* x, at::Tensor* w, at::Tensor* b,
                          at::Tensor* row_group, const int64_t* counts, int64_t num_groups,
                          at::Tensor** out) {
  return guarded("weight gradient tap", [&] {
    std::vector<int64_t> c(counts, counts + num_groups);
    std::optional<at::Tensor> bias;
    if (b != nullptr) bias = *b;
    at::Tensor rows;
    if (row_group != nullptr && row_group->defined() && row_group->numel() == y->size(0)) {
      rows = *row_group;
    } else {
      at::Tensor sizes = at::tensor(c, at::TensorOptions().dtype(at::kLong)).to(y->device());
      rows = at::repeat_interleave(at::arange(num_groups, sizes.options()), sizes, 0, y->size(0));
    }
    *out = new at::Tensor(WeightGradTap::apply(*y, *x, *w, bias, rows, c));
  });
}

}  // extern "C"

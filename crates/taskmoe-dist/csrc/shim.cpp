// taskmoe-dist: a C ABI over libtorch's c10d (TCPStore rendezvous, ProcessGroupGloo, or a
// ProcessGroupNCCL made by nccl.cpp's factory) and an autograd-aware all-to-all, for the Rust
// side in src/ffi.rs.
//
// Conventions: every function that can fail returns NULL on success or a malloc'd,
// NUL-terminated message that the caller frees with tmd_free_error. Tensors cross the boundary
// as `torch::Tensor*` (what tch's C_tensor points to); tensors this file returns are `new`ed
// here and owned by the caller (tch frees them with at_free, which deletes a torch::Tensor*).

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

namespace {

// Calls, bytes sent and wall time of one kind of collective, for the benchmarks.
struct Counter {
  std::atomic<int64_t> calls{0};
  std::atomic<int64_t> bytes{0};
  std::atomic<int64_t> nanos{0};
};

enum Kind { kAllReduce = 0, kAllToAll = 1, kOther = 2, kKinds = 3 };

// nccl.cpp's tmd_nccl_backend_new, reached through a pointer from the library's dlopen.
using NcclFactory = char* (*)(void* store, int rank, int size, int64_t timeout_ms, int device,
                              void** out);

// One process group: a Gloo or NCCL backend over a (possibly prefixed) TCPStore, with the rank
// and size it was created with, and the timeout every collective waits for at most.
struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  int rank;
  int size;
  std::chrono::milliseconds timeout;
  std::string name;
  Counter counters[kKinds];
};

char* message(const std::string& text) {
  char* out = static_cast<char*>(std::malloc(text.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, text.c_str(), text.size() + 1);
  }
  return out;
}

// Runs `body`, turning any C++ exception into an error message naming the group, rank and
// operation.
template <typename F>
char* guarded(const Group* g, const char* op, F&& body) {
  try {
    body();
    return nullptr;
  } catch (const std::exception& e) {
    std::ostringstream s;
    if (g != nullptr) {
      s << "rank " << g->rank << " of " << g->size << " (group `" << g->name << "`): ";
    }
    s << op << " failed: " << e.what();
    return message(s.str());
  } catch (...) {
    std::ostringstream s;
    s << op << " failed with an unknown C++ exception";
    return message(s.str());
  }
}

// Waits for `work` at most the group's timeout; rethrows the backend's error.
void wait(const Group* g, const c10::intrusive_ptr<c10d::Work>& work) {
  if (!work->wait(g->timeout)) {
    auto e = work->exception();
    if (e) {
      std::rethrow_exception(e);
    }
    throw std::runtime_error("the collective did not complete");
  }
}

// Starts a collective with `start` and waits for it, counting it under `kind` with `bytes`.
template <typename F>
void run(Group* g, Kind kind, int64_t bytes, F&& start) {
  auto t0 = std::chrono::steady_clock::now();
  wait(g, start());
  auto dt = std::chrono::steady_clock::now() - t0;
  Counter& c = g->counters[kind];
  c.calls += 1;
  c.bytes += bytes;
  c.nanos += std::chrono::duration_cast<std::chrono::nanoseconds>(dt).count();
}

int64_t nbytes(const at::Tensor& t) { return static_cast<int64_t>(t.numel() * t.element_size()); }

std::vector<int64_t> to_vec(const int64_t* p, size_t n) {
  return std::vector<int64_t>(p, p + n);
}

// The exchange itself; counts the bytes this rank sends to the other ranks.
void do_alltoall(Group* g, at::Tensor& out, at::Tensor& in, std::vector<int64_t>& out_splits,
                 std::vector<int64_t>& in_splits) {
  c10d::AllToAllOptions opts;
  opts.timeout = g->timeout;
  int64_t rows = in.size(0);
  int64_t row_bytes = rows > 0 ? nbytes(in) / rows : 0;
  int64_t sent = (rows - in_splits[static_cast<size_t>(g->rank)]) * row_bytes;
  run(g, kAllToAll, sent,
      [&] { return g->backend->alltoall_base(out, in, out_splits, in_splits, opts); });
}

// A Gloo backend of `size` ranks over `store` whose sockets bind to `bind` (see tmd_group_new).
c10::intrusive_ptr<c10d::Backend> gloo_backend(const c10::intrusive_ptr<c10d::Store>& store,
                                               const char* bind, int rank, int size,
                                               std::chrono::milliseconds timeout) {
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
  if (ifname != nullptr && *ifname != 0) {
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
  } else if (*bind != 0) {
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(bind));
  } else {
    options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  }
  options->threads = 1;
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, options);
}

// Rows exchanged by an all-to-all whose backward is the reverse all-to-all.
//
// forward: `input [sum(in_splits), ...]` sends `in_splits[j]` leading rows to rank j and
// receives `out_splits[j]` from rank j, -> `[sum(out_splits), ...]`. backward: the gradient
// travels the opposite way with the splits swapped.
struct AllToAllFn : public torch::autograd::Function<AllToAllFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input,
                            int64_t group, std::vector<int64_t> out_splits,
                            std::vector<int64_t> in_splits) {
    Group* g = reinterpret_cast<Group*>(group);
    ctx->saved_data["group"] = group;
    ctx->saved_data["out_splits"] = out_splits;
    ctx->saved_data["in_splits"] = in_splits;
    int64_t rows = 0;
    for (auto n : out_splits) rows += n;
    auto sizes = input.sizes().vec();
    sizes[0] = rows;
    at::Tensor in = input.contiguous();
    at::Tensor out = at::empty(sizes, input.options());
    do_alltoall(g, out, in, out_splits, in_splits);
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    Group* g = reinterpret_cast<Group*>(ctx->saved_data["group"].toInt());
    // Swapped: what came in goes back out.
    auto send = ctx->saved_data["out_splits"].toIntVector();
    auto recv = ctx->saved_data["in_splits"].toIntVector();
    int64_t rows = 0;
    for (auto n : recv) rows += n;
    at::Tensor grad = grads[0].contiguous();
    auto sizes = grad.sizes().vec();
    sizes[0] = rows;
    at::Tensor out = at::empty(sizes, grad.options());
    do_alltoall(g, out, grad, recv, send);
    return {out, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// Sum over the group whose backward is again the sum over the group: each rank's loss depends
// on the global sum, so the gradient of the total loss at one rank's input sums every rank's
// gradient of the output.
struct AllReduceSumFn : public torch::autograd::Function<AllReduceSumFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input,
                            int64_t group) {
    Group* g = reinterpret_cast<Group*>(group);
    ctx->saved_data["group"] = group;
    std::vector<at::Tensor> t{input.contiguous().clone()};
    c10d::AllreduceOptions opts;
    opts.timeout = g->timeout;
    run(g, kAllReduce, nbytes(t[0]), [&] { return g->backend->allreduce(t, opts); });
    return t[0];
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    Group* g = reinterpret_cast<Group*>(ctx->saved_data["group"].toInt());
    std::vector<at::Tensor> t{grads[0].contiguous().clone()};
    c10d::AllreduceOptions opts;
    opts.timeout = g->timeout;
    run(g, kAllReduce, nbytes(t[0]), [&] { return g->backend->allreduce(t, opts); });
    return {t[0], at::Tensor()};
  }
};

}  // namespace

extern "C" {

void tmd_free_error(char* e) { std::free(e); }

// Connects to (rank `store_rank` 0: serves) the TCPStore of `store_size` ranks at host:port and
// creates a group of `size` ranks. `prefix` namespaces the store keys, so several groups share
// one store; `store_of` (may be NULL) reuses the store of an existing group instead of
// connecting again. Without `nccl_factory` (NULL) the group is Gloo's, whose sockets bind to
// `bind` (empty: the host name's address; GLOO_SOCKET_IFNAME wins); with it, the factory makes
// an NCCL backend on CUDA device `device`.
char* tmd_group_new(const char* host, const char* bind, int port, int rank, int size, int64_t timeout_ms,
                    const char* prefix, void* store_of, int store_rank, int store_size,
                    void* nccl_factory, int device, void** out) {
  std::string name = prefix;
  Group probe;
  probe.rank = rank;
  probe.size = size;
  probe.name = name;
  return guarded(&probe, "process group creation", [&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10::intrusive_ptr<c10d::Store> base;
    if (store_of != nullptr) {
      base = static_cast<Group*>(store_of)->store;
    } else {
      c10d::TCPStoreOptions opts;
      opts.port = static_cast<std::uint16_t>(port);
      opts.isServer = store_rank == 0;
      opts.numWorkers = static_cast<size_t>(store_size);
      opts.waitWorkers = true;
      opts.timeout = timeout;
      base = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    }
    c10::intrusive_ptr<c10d::Store> prefixed =
        c10::make_intrusive<c10d::PrefixStore>(name, base);
    c10::intrusive_ptr<c10d::Backend> backend;
    if (nccl_factory != nullptr) {
      void* made = nullptr;
      char* err = reinterpret_cast<NcclFactory>(nccl_factory)(&prefixed, rank, size, timeout_ms,
                                                             device, &made);
      if (err != nullptr) {
        std::string text(err);
        std::free(err);
        throw std::runtime_error(text);
      }
      auto* held = static_cast<c10::intrusive_ptr<c10d::Backend>*>(made);
      backend = *held;
      delete held;
    } else {
      backend = gloo_backend(prefixed, bind, rank, size, timeout);
    }
    auto* g = new Group;
    g->store = base;
    g->backend = backend;
    g->rank = rank;
    g->size = size;
    g->timeout = timeout;
    g->name = name;
    *out = g;
  });
}

void tmd_group_free(void* g) { delete static_cast<Group*>(g); }

// In-place sum over the group.
char* tmd_allreduce_sum(void* group, torch::Tensor* t) {
  auto* g = static_cast<Group*>(group);
  return guarded(g, "all_reduce", [&] {
    TORCH_CHECK(t->is_contiguous(), "all_reduce needs a contiguous tensor");
    std::vector<at::Tensor> ts{*t};
    c10d::AllreduceOptions opts;
    opts.timeout = g->timeout;
    run(g, kAllReduce, nbytes(*t), [&] { return g->backend->allreduce(ts, opts); });
  });
}

// In-place broadcast from `root`.
char* tmd_broadcast(void* group, torch::Tensor* t, int root) {
  auto* g = static_cast<Group*>(group);
  return guarded(g, "broadcast", [&] {
    TORCH_CHECK(t->is_contiguous(), "broadcast needs a contiguous tensor");
    std::vector<at::Tensor> ts{*t};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    opts.timeout = g->timeout;
    run(g, kOther, nbytes(*t), [&] { return g->backend->broadcast(ts, opts); });
  });
}

// Every rank's `t`, stacked along a new leading dimension: `[size, ...]`.
char* tmd_allgather(void* group, torch::Tensor* t, torch::Tensor** out) {
  auto* g = static_cast<Group*>(group);
  return guarded(g, "all_gather", [&] {
    std::vector<at::Tensor> in{t->contiguous()};
    std::vector<std::vector<at::Tensor>> outs(1);
    for (int r = 0; r < g->size; ++r) {
      outs[0].push_back(at::empty_like(in[0]));
    }
    c10d::AllgatherOptions opts;
    opts.timeout = g->timeout;
    run(g, kOther, nbytes(in[0]), [&] { return g->backend->allgather(outs, in, opts); });
    *out = new torch::Tensor(at::stack(outs[0], 0));
  });
}

// Rows of `t` split by `in_splits` go to the ranks in order; the result holds `out_splits[j]`
// rows from rank j. Autograd-aware: the backward is the reverse exchange.
char* tmd_alltoall(void* group, torch::Tensor* t, const int64_t* out_splits,
                   const int64_t* in_splits, torch::Tensor** out) {
  auto* g = static_cast<Group*>(group);
  return guarded(g, "all_to_all", [&] {
    auto o = to_vec(out_splits, static_cast<size_t>(g->size));
    auto i = to_vec(in_splits, static_cast<size_t>(g->size));
    int64_t rows = 0;
    for (auto n : i) rows += n;
    TORCH_CHECK(t->dim() >= 1 && t->size(0) == rows, "all_to_all input has ", t->size(0),
                " rows, the input splits sum to ", rows);
    *out = new torch::Tensor(AllToAllFn::apply(*t, reinterpret_cast<int64_t>(g), o, i));
  });
}

// Out-of-place sum over the group whose backward sums the gradients over the group.
char* tmd_allreduce_sum_autograd(void* group, torch::Tensor* t, torch::Tensor** out) {
  auto* g = static_cast<Group*>(group);
  return guarded(g, "all_reduce (autograd)", [&] {
    *out = new torch::Tensor(AllReduceSumFn::apply(*t, reinterpret_cast<int64_t>(g)));
  });
}

char* tmd_barrier(void* group) {
  auto* g = static_cast<Group*>(group);
  return guarded(g, "barrier", [&] {
    c10d::BarrierOptions opts;
    opts.timeout = g->timeout;
    run(g, kOther, 0, [&] { return g->backend->barrier(opts); });
  });
}

// Writes calls, bytes and seconds of each kind (all-reduce, all-to-all, other) into `out[9]`.
void tmd_group_stats(void* group, double* out) {
  auto* g = static_cast<Group*>(group);
  for (int k = 0; k < kKinds; ++k) {
    out[3 * k] = static_cast<double>(g->counters[k].calls.load());
    out[3 * k + 1] = static_cast<double>(g->counters[k].bytes.load());
    out[3 * k + 2] = static_cast<double>(g->counters[k].nanos.load()) * 1e-9;
  }
}

}  // extern "C"

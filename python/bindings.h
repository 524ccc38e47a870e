#pragma once
// Shared by the translation units of nfk._nfk (python/nfk_module.cpp registers them all): array
// conversion, CallScope (warnings and Ctrl-C for one binding call), and the bind_* functions.
//
// Arrays cross the boundary as NumPy arrays (copied, but for spooled inputs: to_inputs), so the
// module needs LibTorch's C++ library only, never PyTorch's Python bindings; torch tensors are
// turned into arrays on the Python side.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <torch/torch.h>

#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "nfk/messages.h"
#include "nfk/model.h"
#include "nfk/progress.h"

namespace nfk_python {

namespace py = pybind11;

// --- arrays (arrays.cpp) -----------------------------------------------------------------------

/// Inputs [N, ...] from an array exactly as `nfk` reads an .npy file (load_dataset): uint8 images
/// scaled to [0, 1] float32, other integers to float32, NaN/Inf rejected. A copy of `a`, except
/// for a floating np.memmap opened copy-on-write, which is read in place (it stays alive as long
/// as the tensor): the inputs of an iterable of batches, spooled to a file by the Python layer.
torch::Tensor to_inputs(const py::array& a, const std::string& what);

/// Class labels int64 [N] from a 1-d int64 array (the Python layer converts other integers).
torch::Tensor to_labels(const py::array& a);

/// A tensor over a copy of a float/integer array (its dtype kept), on the CPU.
torch::Tensor to_tensor(const py::array& a);

/// A NumPy copy of `t` (float32, float64, uint8 or int64), on the CPU.
py::array to_array(const torch::Tensor& t);

// --- one binding call: warnings and Ctrl-C (call_scope.cpp) -----------------------------------

/// Collects the LibTorch warnings (TORCH_WARN, TorchScript's warnings.warn) raised during one
/// binding call, each distinct message once. They arrive with the GIL released, so they are only
/// stored here; CallScope re-emits them through Python's `warnings` module.
class WarningCollector : public c10::WarningHandler {
 public:
  void process(const c10::SourceLocation& location, const std::string& msg,
               const bool verbatim) override;
  std::vector<std::string> take();

 private:
  std::mutex mutex_;
  std::vector<std::string> messages_;
};

/// The length of one binding call, from its first statement (GIL held) to its return: LibTorch
/// warnings go to a WarningCollector instead of glog on stderr, and come out as `warnings.warn`
/// (UserWarning) when the call ends; `progress()` lets Ctrl-C stop the library's long loops.
/// Example: `CallScope scope; ...; auto r = nfk::transform(..., scope.progress()); scope.finish();`
class CallScope {
 public:
  CallScope() : guard_(std::in_place, &collector_) {}
  CallScope(const CallScope&) = delete;
  CallScope& operator=(const CallScope&) = delete;

  /// On an error the warnings still reach Python (they may explain it), but a warning filter
  /// that turns one into an exception cannot replace the error in flight.
  ~CallScope();

  /// Restores the previous warning handler and emits the collected warnings (GIL held). Throws
  /// py::error_already_set when a filter (`warnings.simplefilter("error")`) makes one an error.
  void finish();

  /// The progress callback for every long library call, called between batches with the GIL
  /// released: it takes the GIL, calls `callback(stage, done, total)` (a Python callable, e.g.
  /// nfk's tqdm bars; None: none) and runs Python's signal handlers. A pending Ctrl-C raises
  /// KeyboardInterrupt, thrown as py::error_already_set through the library (which only holds
  /// RAII state) back to the binding, where pybind11 restores it; so does an error in callback.
  /// The callback is borrowed: the binding's argument keeps it alive for the call.
  static nfk::ProgressFn progress(const py::object& callback = py::none());

 private:
  WarningCollector collector_;
  std::optional<nfk::WarningHandlerGuard>
      guard_;  // LibTorch 1.13 and 2.x  // declared after the collector
  bool finished_ = false;
};

// --- registration, in the order nfk_module.cpp calls them --------------------------------------
// Each library call: a CallScope first (warnings, Ctrl-C), arrays converted with the GIL held, the
// library call with the GIL released, results converted, scope.finish().

/// nfk's errors → Python exceptions with the one line the CLI prints (errors.cpp).
void register_error_translator();
/// ScoreModel, load_score_model, load_dataset (bind_models.cpp).
void bind_models(py::module_& m);
/// Projector, load_projector, load_projector_model (bind_projector.cpp).
void bind_projector(py::module_& m);
/// fit, transform, fisher_stats, set_distance (bind_fit.cpp).
void bind_fit(py::module_& m);
/// classifier_fisher_diag, fisher_capacity, fisher_vector_product, kfac_factors, KfacFactors
/// (bind_classifier_fisher.cpp).
void bind_classifier_fisher(py::module_& m);

}  // namespace nfk_python

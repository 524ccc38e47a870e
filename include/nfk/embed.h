#pragma once
/// nfk embedding layer: fit a low-rank NFK projector on a data set, save/load it as a
/// self-describing versioned file, and embed any input: e(x) = Pᵀ V_x ∈ R^k (SPEC §1).

#include <torch/torch.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "nfk/dist.h"
#include "nfk/fisher.h"
#include "nfk/linalg.h"
#include "nfk/model.h"
#include "nfk/progress.h"

namespace nfk {

/// How the truncated SVD of V is computed (SPEC §2).
/// kExact: materialise V, eigendecompose the Gram matrix (paper Alg. 1);
/// kPerExample: randomized SVD by GEMMs on per-example gradient blocks: V kept resident when
///   N·P fits the memory budget, else its blocks recomputed on every pass;
/// kMatrixFree: randomized SVD by streaming JVP/VJP passes (paper Alg. 4);
/// kSketch: single-pass sketch SVD (Tropp et al. 2017) on per-example blocks: after the Fisher
///   statistics, V is read once (instead of 2L + 2 times); less accurate on flat spectra;
/// kAuto: per-example with V resident when it fits the budget; otherwise per-example recomputed
///   where the layer tape covers the model (a pass costs about one batched backward instead of
///   one forward-mode pass per probe), else matrix-free. `Projector::method_note` says why.
enum class FitMethod { kAuto, kExact, kPerExample, kMatrixFree, kSketch };
FitMethod parse_fit_method(const std::string& name);  // "auto" | "exact" | "per-example" | ...
std::string to_string(FitMethod m);

struct FitOptions {
  FitMethod method = FitMethod::kAuto;
  SvdOptions svd;
  FisherOptions fisher;
  int64_t batch_size = 256;
  int64_t memory_budget = int64_t{4} << 30;  // bytes V (this rank's rows) may take in memory
  /// Data-parallel ranks (not owned; null: this process alone). Every rank calls fit() with the
  /// same inputs and options, streams its shard (dist::shard_range in whole batches) and gets the
  /// same projector; products, Fisher statistics and the projector are reduced once per pass.
  dist::Group* group = nullptr;
  /// A folder for the fit's resumable state (empty: none): the Fisher statistics and the
  /// randomized SVD's basis after every pass. With `resume`, a fit continues from the folder's
  /// state (refused if it is another fit's) and gives the uninterrupted projector bit for bit.
  std::string checkpoint_dir;
  bool resume = false;
};

/// Where a fit's time went: wall seconds of each stage, the device synchronised at every stage
/// boundary (CUDA runs asynchronously), so the stages add up to the fit. Not saved.
struct FitProfile {
  double statistics_s = 0;      // Fisher statistics pass (z, I) when it runs on its own
  double gradients_s = 0;       // per-example gradients into a resident V (with z, I in one pass)
  double products_s = 0;        // the SVD's products VQ, VᵀM (GEMMs on resident V, or V's
                                // blocks recomputed per pass, or JVP/VJP passes)
  double factorizations_s = 0;  // QR, small SVDs, the Gram eigendecomposition
  double total_s = 0;           // the whole fit (≥ the sum of the stages)
  int64_t products = 0;         // operator products (VQ and VᵀM count one each)
  double product_flops = 0;     // GEMM flops of those products when V is resident (2·N·P·u each)
  int64_t peak_device_bytes = -1;  // CUDA caching allocator peak during the fit; -1 on the CPU
  nlohmann::json to_json() const;
};

/// A fitted NFK projector: everything `transform` needs, plus provenance.
struct Projector {
  static constexpr int kFormatVersion = 2;  // 2: crc32 of the header and of each tensor
  ModelKind kind = ModelKind::kScore;
  ModelOptions model;                   // paths (absolute), latent dim, output column, seed, dtype
  std::string model_hash;               // file_hash of model.model_path
  std::string generator_hash;           // file_hash of model.generator_path, if any
  FitMethod method = FitMethod::kAuto;  // resolved method
  SvdOptions svd;
  FisherStats fisher;             // z, I and how they were obtained
  torch::Tensor basis;            // P [P, k]
  torch::Tensor singular_values;  // σ [k]
  double total_variance = 0;      // ‖V‖_F² over the fitted data
  bool total_variance_exact = false;
  torch::Tensor all_eigenvalues;  // exact method: the whole Gram spectrum [min(N, P)] float64
  int64_t n_examples = 0;
  std::vector<int64_t> input_shape;  // one example's shape at the fit, e.g. [1, 28, 28]
  std::string data_source;
  int64_t batch_size = 256;
  std::string method_note;  // how the method was chosen, one line (not saved)
  FitProfile profile;       // where the fit's time went (not saved)

  int64_t rank() const { return singular_values.size(0); }
  int64_t n_params() const { return basis.size(0); }
  /// σ² / total variance, [k] float64.
  torch::Tensor explained_variance_ratio() const;
  /// Fewest leading components explaining `fraction` of the NFK variance: from the whole
  /// spectrum when known (exact method), else from the top k; -1 if k components do not reach it.
  int64_t components_for(double fraction) const;
  /// The spectrum summary of `nfk spectrum --json`.
  nlohmann::json spectrum_json() const;
};

/// Fits a rank-k projector on `inputs` [N, ...]: Fisher statistics (once), then the truncated
/// SVD of V by the chosen method. Returns the projector and, if `train_embedding` is not null,
/// e(X) = Φ diag(σ) [N, k].
/// Example: `auto proj = nfk::fit(model, ds.inputs, opts, "mnist:test");`
Projector fit(ScoreModel& model, const torch::Tensor& inputs, const FitOptions& options,
              const std::string& data_source = "", const ProgressFn& progress = {},
              torch::Tensor* train_embedding = nullptr);

/// e(x) = Pᵀ V_x for every row of `inputs` [N, ...] → [N, k] (projector dtype): per-example
/// gradient blocks, one GEMM each. `model` must be the projector's model (checked by parameter
/// count).
/// With `group` (every rank passing the same inputs), each rank embeds its shard and every rank
/// gets all N rows.
torch::Tensor transform(const Projector& projector, ScoreModel& model, const torch::Tensor& inputs,
                        int64_t batch_size = 256, const ProgressFn& progress = {},
                        dist::Group* group = nullptr);

/// Fails with one line unless `model` has the projector's parameter count and, when `inputs`
/// [N, ...] are given, one example has the shape the projector was fitted on.
void check_projector_model(const Projector& projector, ScoreModel& model,
                           const torch::Tensor& inputs = {});

/// Rebuilds the projector's score model from its stored paths, checking the files' hashes.
/// `model_path_override` (if not empty) replaces the stored model path.
ScoreModel load_projector_model(const Projector& projector,
                                const std::string& model_path_override = "");

/// Writes a projector file atomically: magic "NFKPROJ\n", a JSON header (metadata and a tensor
/// table), then the raw little-endian tensor data.
void save_projector(const std::string& path, const Projector& projector);

/// Reads and validates a projector file; throws "nfk: <path>: ..." on any inconsistency.
Projector load_projector(const std::string& path);

}  // namespace nfk

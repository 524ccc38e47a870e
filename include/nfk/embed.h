#pragma once
/// nfk embedding layer: fit a low-rank NFK projector on a data set, save/load it as a
/// self-describing versioned file, and embed any input: e(x) = Pᵀ V_x ∈ R^k (SPEC §1).

#include <torch/torch.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nfk/dist.h"
#include "nfk/fisher.h"
#include "nfk/linalg.h"
#include "nfk/model.h"
#include "nfk/names.h"
#include "nfk/progress.h"
#include "nfk/run_options.h"

namespace nfk {

/// How the truncated SVD of V is computed (SPEC §2).
/// kExact: materialise V, eigendecompose the Gram matrix (paper Alg. 1);
/// kPerExample: randomized SVD by GEMMs on per-example gradient blocks: V kept resident when
///   N·P fits the memory budget, else its blocks recomputed on every pass;
/// kMatrixFree: randomized SVD by streaming JVP/VJP passes (paper Alg. 4);
/// kSketch: single-pass sketch SVD (Tropp et al. 2017) on per-example blocks: after the Fisher
///   statistics, V is read once (instead of 2L + 2 times); less accurate on flat spectra;
/// kAuto: exact where V fits the budget and its Gram eigendecomposition costs fewer flops than
///   the randomized SVD at its iteration cap (`exact_is_cheaper`); else per-example with V
///   resident when it fits the budget; otherwise per-example recomputed
///   where the layer tape covers the model (a pass costs about one batched backward instead of
///   one forward-mode pass per probe), else matrix-free. `Projector::method_note` says why.
enum class FitMethod { kAuto, kExact, kPerExample, kMatrixFree, kSketch };
const Names<FitMethod>& fit_method_names();  // auto, exact, per-example, matrix-free, sketch
inline FitMethod parse_fit_method(const std::string& name) {
  return fit_method_names().parse(name);
}
inline std::string to_string(FitMethod value) {
  return fit_method_names().name(value);
}

struct FitOptions {
  FitMethod method = FitMethod::kAuto;
  SvdOptions svd;  // rank, oversample, power iterations (the cap), tol, solver, VᵀV products
                   // (svd.seed is ignored: run.seed rules; the plan resolves the autos)
  FisherOptions fisher;
  int64_t memory_budget = int64_t{4} << 30;  // bytes V (this rank's rows) may take in memory
  /// Batch size, the one seed of every random choice, progress, and the data-parallel ranks:
  /// with `run.group`, every rank calls fit() with the same inputs and options, streams its
  /// shard (dist::shard_range in whole batches) and gets the same projector; products, Fisher
  /// statistics and the projector are reduced once per pass.
  RunOptions run;
  /// A folder for the fit's resumable state (empty: none): the Fisher statistics and the
  /// randomized SVD's basis after every pass. With `resume`, a fit continues from the folder's
  /// state (refused if it is another fit's) and gives the uninterrupted projector bit for bit.
  std::string checkpoint_dir;
  bool resume = false;
};

/// What a fit will do, decided once before any heavy work (`plan_fit`) and executed by `fit`:
/// the method, how per-example gradients are formed, how V is split over processes and what it
/// costs in memory, each with the reason for it. `describe()` is what `nfk fit` prints first.
struct FitPlan {
  FitMethod method = FitMethod::kAuto;  // resolved: never kAuto
  bool v_resident = false;   // V's rows held in memory (exact; per-example within the budget)
  VOperatorSpec v_operator;  // a streaming V's products, gradient path and batch size
  SvdOptions svd;  // what the randomized SVD runs: solver and tol resolved (not kAuto / < 0)
  std::string gradient_path_reason;  // why per-example gradients take the loop ("" for the tape)
  int64_t n_examples = 0, n_params = 0;
  int64_t v_bytes = 0;           // all of V in the model's dtype
  int64_t v_bytes_per_rank = 0;  // the largest rank's rows of V
  int64_t memory_budget = 0;     // bytes V (a rank's rows) may take
  int world_size = 1;
  dist::Shard shard;                 // this rank's rows (all of them without a group)
  std::vector<int64_t> shard_rows;   // every rank's row count, rank order
  std::vector<std::string> reasons;  // why the method, in the order the choices were made

  /// One line: the method and what it rests on (Projector::method_note).
  std::string summary() const;
  /// Several lines, "plan: ..." first, for the user before the work starts.
  std::string describe() const;
  nlohmann::json to_json() const;
};

/// Decides a fit of `inputs` [N, ...] with `options`: validates the sizes, probes the layer
/// tape on the first examples (choose_gradient_path; every rank probes the same ones, so every
/// rank plans alike), splits the rows over `options.group` and picks the method (kAuto: V
/// resident when this rank's rows fit the memory budget; else per-example blocks recomputed per
/// pass where the tape covers the model, else matrix-free), and the SVD's solver (block Krylov
/// where its basis takes at most 1 GiB or a quarter of the memory budget, else subspace iteration;
/// subspace with two-pass products and no early stop when checkpointing). Costs one probe batch.
FitPlan plan_fit(ScoreModel& model, const torch::Tensor& inputs, const FitOptions& options);

/// The cost model behind kAuto's exact choice, in multiply-adds, m = min(N, P): the exact method
/// forms the float64 Gram (m·N·P, counted twice: float64 runs at half the float32 rate) and
/// eigendecomposes it (about 9·m³); the randomized SVD at its cap L makes 2L + 2 products of
/// N·P·u (fused or not) plus, for block Krylov, the basis orthogonalisation (about 2·P·u²·L²).
/// Exact when it costs no more. Example: LeNet-5 (P = 61,706), k = 32, u = 42, L = 10: exact up
/// to N = 447 with subspace iteration, 685 with block Krylov.
bool exact_is_cheaper(int64_t n, int64_t p, const SvdOptions& svd);

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
  int64_t passes = 0;           // passes over V by the SVD (a fused VᵀV Q counts one; the
                                // exact method and the sketch one)
  int64_t iterations = 0;       // power / Krylov iterations made (≤ the cap)
  double estimated_error = -1;  // the SVD's estimate of the max relative error of the top-k σ
                                // (0: exact; -1: not estimated, e.g. the sketch)
  bool fused = false;           // iterations multiplied by VᵀV in one pass
  double product_flops = 0;     // GEMM flops of those products when V is resident (2·N·P·u each)
  int64_t peak_device_bytes = -1;  // CUDA caching allocator peak during the fit; -1 on the CPU
  nlohmann::json to_json() const;
};

/// A fitted NFK projector: everything `transform` needs, plus provenance.
struct Projector {
  static constexpr int kFormatVersion = 3;  // 2: crc32 of the header and of each tensor;
                                            // 3: embedded model files, the gradient path
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
  GradientPath gradient_path = GradientPath::kAuto;  // the fit's per-example gradient path
  std::string model_bytes, generator_bytes;  // the model files themselves (record_model_files)
  std::string method_note;                   // how the method was chosen, one line (not saved)
  FitProfile profile;  // where the fit's time went (saved: the SVD's iterations, passes and
                       // estimated error)

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

/// What `fit` returns: the projector, the training embedding e(X) = Φ diag(σ) [N, k] and the
/// plan it executed.
struct FitResult {
  Projector projector;
  torch::Tensor train_embedding;
  FitPlan plan;
};

/// Fits a rank-k projector on `inputs` [N, ...]: plan_fit (unless `plan` is given: a plan made
/// by plan_fit for the same model, inputs and options), the Fisher statistics (once), then the
/// truncated SVD of V by the plan's method. The model may be held in memory only: provenance
/// (file hashes) is recorded by `record_model_files`, where files exist.
/// Example: `auto r = nfk::fit(model, ds.inputs, opts, "mnist:test"); r.projector.basis;`
FitResult fit(ScoreModel& model, const torch::Tensor& inputs, const FitOptions& options,
              const std::string& data_source = "", const FitPlan* plan = nullptr);

/// Records the projector's model files: absolute paths and their hashes (checked when the
/// projector reloads its model), for the paths in `projector.model` that name regular files.
/// With `embed`, the files' bytes are stored in the projector too, so that it alone is enough
/// to embed new data later (`load_projector_model` then needs no file).
void record_model_files(Projector& projector, bool embed = false);

/// e(x) = Pᵀ V_x for every row of `inputs` [N, ...] → [N, k] (projector dtype), on the fit's
/// gradient path: per-example gradient blocks and one GEMM each where the layer tape covers the
/// model, else k forward-mode passes per batch (when k < batch size). `model` must be the
/// projector's model (checked by parameter count and example shape). With `run.group` (every
/// rank passing the same inputs), each rank embeds its shard and every rank gets all N rows.
/// Example: `auto e = nfk::transform(proj, model, x, {/*batch_size=*/64});`
torch::Tensor transform(const Projector& projector, ScoreModel& model, const torch::Tensor& inputs,
                        const RunOptions& run = {});

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

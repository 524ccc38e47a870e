// Uses the installed nfk through its umbrella header: a randomized SVD of a matrix with known
// singular values, a zoo model saved and reloaded, and the installed data folder rule.
// Prints one line per check; exits non-zero on the first failure.
#include <nfk/nfk.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  std::printf("%s: %s\n", ok ? "ok" : "FAILED", what.c_str());
  if (!ok) ++failures;
}

// V = U diag(σ) Wᵀ [40, 30] with orthonormal U, W: its top singular values are exactly σ.
void check_svd() {
  torch::manual_seed(0);
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  const auto sigma = torch::tensor({10.0, 5.0, 3.0, 2.0, 1.0}, f64);
  const auto u = std::get<0>(torch::linalg_qr(torch::randn({40, 5}, f64)));
  const auto w = std::get<0>(torch::linalg_qr(torch::randn({30, 5}, f64)));
  nfk::DenseOperator op(u.mm(torch::diag(sigma)).mm(w.t()));
  nfk::SvdOptions options;
  options.rank = 3;
  const nfk::SvdResult r = nfk::randomized_svd(op, options);
  const double err = (r.singular_values - sigma.slice(/*dim=*/0, 0, 3)).abs().max().item<double>();
  check(err < 1e-8,
        "randomized_svd recovers sigma = 10, 5, 3 (max error " + std::to_string(err) + ")");
}

// A zoo MLP: forward shape, then the same outputs after a save/load round trip.
void check_zoo() {
  torch::manual_seed(1);
  nfk::ZooModule mlp = nfk::make_zoo_module(
      "mlp", {{"in_features", 4}, {"hidden", std::vector<int64_t>{8}}, {"out_features", 3}});
  const auto x = torch::randn({2, 4});
  const auto y = mlp.forward(x);
  check(y.sizes() == torch::IntArrayRef({2, 3}), "zoo mlp forward [2, 4] -> [2, 3]");
  const std::string path = std::string(std::getenv("NFK_CONSUMER_TMP")) + "/mlp.pt";
  nfk::save_zoo_module(path, mlp);
  const nfk::ZooModule back = nfk::load_zoo_module(path);
  check(back.arch == "mlp" && back.options == mlp.options && torch::equal(back.forward(x), y),
        "zoo archive round trip");
}

// The installed library: $NFK_DATA_DIR first, else the folder it was configured with.
void check_data_dir() {
  ::setenv("NFK_DATA_DIR", "/somewhere/else", 1);
  check(nfk::data_dir() == "/somewhere/else", "data_dir() follows NFK_DATA_DIR");
  ::unsetenv("NFK_DATA_DIR");
  const std::string expected = NFK_EXPECTED_DATA_DIR;
  if (expected.empty()) {
    bool threw = false;
    try {
      nfk::data_dir();
    } catch (const c10::Error& e) {
      threw = std::string(e.what()).find("NFK_DATA_DIR") != std::string::npos;
    }
    check(threw, "data_dir() without a default asks for NFK_DATA_DIR");
  } else {
    check(nfk::data_dir() == expected, "data_dir() defaults to " + expected);
  }
}

}  // namespace

int main() {
  try {
    check_svd();
    check_zoo();
    check_data_dir();
  } catch (const std::exception& e) {
    std::printf("FAILED: %s\n", e.what());
    return 1;
  }
  return failures == 0 ? 0 : 1;
}

// The K-FAC / EK-FAC .npz of `nfk fisher --form kfac|ekfac` read back by numpy
// (tests/cli/kfac_npz_roundtrip.py), and its refusals.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "../cli/fisher_factors_output.h"
#include "kfac_support.h"
#include "nfk/data.h"
#include "nfk/output_files.h"

namespace nfk {
namespace {

namespace fs = std::filesystem;

// Runs the numpy round trip on `npz` against reference .npy files written by write_npy.
// Returns the script's exit status (77: numpy is missing).
int numpy_round_trip(const std::string& npz, const KfacFactors& k, const std::string& dir) {
  nlohmann::json expected = {
      {"form", to_string(k.form)}, {"n_examples", k.n_examples}, {"num_params", k.num_params}};
  expected["layers"] = nlohmann::json::array();
  for (const auto& l : k.layers) {
    expected["layers"].push_back(l.name);
    std::vector<std::pair<std::string, torch::Tensor>> named = {{"A", l.a}, {"G", l.g}};
    if (k.form == FisherForm::kEkfac)
      named.insert(named.end(), {{"QA", l.qa}, {"QG", l.qg}, {"scalings", l.scalings}});
    for (const auto& [suffix, t] : named) write_npy(dir + "/" + l.name + "." + suffix + ".npy", t);
  }
  expected["left_out"] = nlohmann::json::array();
  for (const auto& lo : k.left_out) expected["left_out"].push_back(lo.index);
  std::ofstream(dir + "/expected.json") << expected.dump();
  const char* source_dir = std::getenv("NFK_TEST_SOURCE_DIR");
  const auto script = (source_dir ? fs::path(source_dir) : fs::path(__FILE__).parent_path()) /
                      "cli" / "kfac_npz_roundtrip.py";
  const std::string cmd =
      "/usr/bin/python3 " + script.string() + " " + npz + " " + dir + " > " + dir + "/log.txt 2>&1";
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(KfacOutput, NumpyReadsEveryFactorAndTheIndex) {
  if (!fs::exists("/usr/bin/python3")) GTEST_SKIP() << "no /usr/bin/python3";
  auto net = test::kfac_net();
  auto model = test::kfac_model(net);
  test::seed(1);
  auto x = torch::rand({4, 2, 6, 6}, torch::kFloat64);
  ClassifierFisherOptions options;
  for (auto* make : {&kfac_factors, &ekfac_factors}) {
    auto k = make(model, {x, {}}, options, {});
    const std::string dir = test::temp_dir("kfac_npz_" + to_string(k.form));
    const std::string npz = dir + "/factors.npz";
    cli::write_kfac_factors(npz, k);
    cli::write_kfac_factors(npz, k);  // a file nfk wrote is replaced
    const int code = numpy_round_trip(npz, k, dir);
    if (code == 77) GTEST_SKIP() << "numpy is not installed for /usr/bin/python3";
    EXPECT_EQ(code, 0) << "see " << dir << "/log.txt";
  }
}

TEST(KfacOutput, AnOutputGroupStagesTheArchiveUntilItCommits) {
  auto net = test::kfac_net();
  auto model = test::kfac_model(net);
  auto k = kfac_factors(model, {torch::rand({2, 2, 6, 6}, torch::kFloat64), {}}, {}, {});
  const std::string path = test::temp_dir("kfac_npz_group") + "/factors.npz";
  {
    OutputGroup outputs;
    cli::write_kfac_factors(path, k);
    EXPECT_FALSE(fs::exists(path));
  }  // no commit: nothing appears
  EXPECT_FALSE(fs::exists(path));
  {
    OutputGroup outputs;
    cli::write_kfac_factors(path, k);
    outputs.commit();
  }
  EXPECT_TRUE(fs::is_regular_file(path));
}

TEST(KfacOutput, ADirectoryIsNeverReplaced) {
  auto net = test::kfac_net();
  auto model = test::kfac_model(net);
  auto k = kfac_factors(model, {torch::rand({2, 2, 6, 6}, torch::kFloat64), {}}, {}, {});
  const std::string dir = test::temp_dir("kfac_npz_dir");
  fs::create_directories(dir + "/out.npz");
  const auto why = test::error_of([&] { cli::write_kfac_factors(dir + "/out.npz", k); });
  EXPECT_NE(why.find("nfk: cannot write"), std::string::npos) << why;
  EXPECT_TRUE(fs::is_directory(dir + "/out.npz"));
}

}  // namespace
}  // namespace nfk

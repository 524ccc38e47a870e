// The enum name tables (include/nfk/names.h): every value round-trips through its name, the names
// are the spellings files and CLI flags use (spelled out here: they are a file format), and an
// unknown name is refused with one line that lists the choices.
#include <string>
#include <vector>

#include "nfk/classifier_fisher.h"
#include "nfk/distill.h"
#include "nfk/embed.h"
#include "nfk/ewc.h"
#include "nfk/fisher.h"
#include "nfk/knn.h"
#include "nfk/linalg.h"
#include "nfk/model.h"
#include "support.h"

namespace nfk {
namespace {

template <typename E>
void expect_table(const Names<E>& names, const std::vector<std::string>& spelled) {
  EXPECT_EQ(names.all(), spelled);
  for (const auto& name : spelled) EXPECT_EQ(names.name(names.parse(name)), name);
}

TEST(Names, EveryTableSpellsItsValuesAsFilesAndFlagsDo) {
  expect_table(svd_solver_names(), {"auto", "subspace", "block-krylov"});
  expect_table(fit_method_names(), {"auto", "exact", "per-example", "matrix-free", "sketch"});
  expect_table(estimator_names(), {"auto", "true", "empirical", "none"});
  expect_table(gradient_path_names(), {"auto", "layer-tape", "loop"});
  expect_table(fisher_estimator_names(), {"true", "mc", "empirical", "batched"});
  expect_table(fisher_form_names(), {"diag", "kfac", "ekfac"});
  expect_table(distill_method_names(), {"none", "kd", "nfkd"});
  expect_table(target_loss_names(), {"l2", "cosine"});
  expect_table(continual_method_names(), {"finetune", "l2", "ewc", "online-ewc"});
  expect_table(model_kind_names(), {"classifier", "gan", "vae", "density", "score", "ntk"});
  expect_table(knn_metric_names(), {"cosine", "euclidean"});
  EXPECT_EQ(to_string(FisherEstimator::kMonteCarlo), "mc");
  EXPECT_EQ(parse_model_kind("ntk"), ModelKind::kNtk);
}

TEST(Names, AnUnknownNameIsOneLineListingTheChoices) {
  EXPECT_EQ(test::error_of([] { parse_fisher_form("full"); }),
            "nfk: unknown Fisher form `full` (expected diag, kfac or ekfac)");
  EXPECT_EQ(test::error_of([] { parse_target_loss("l1"); }),
            "nfk: unknown NFKD loss `l1` (expected l2 or cosine)");
}

TEST(Names, TheNtkEstimatorIsReadFromFilesButNeverChosen) {
  EXPECT_EQ(estimator_names().parse("none"), Estimator::kNone);
  EXPECT_NE(test::error_of([] { parse_estimator("none"); }).find("belongs to kind ntk"),
            std::string::npos);
  EXPECT_EQ(parse_estimator("true"), Estimator::kTrue);
}

}  // namespace
}  // namespace nfk

#include <cstdio>

#include "commands.h"
#include "common.h"
#include "figures.h"
#include "nfk/embed.h"
#include "nfk/output_files.h"

namespace nfk::cli {

void add_spectrum_command(CLI::App& app) {
  struct Flags {
    std::string projector, plot;
    bool json = false;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd = app.add_subcommand("spectrum",
                                 "Print a projector's NFK spectrum: sigma, sigma^2 "
                                 "and explained-variance ratio");
  cmd->add_option("--projector", f->projector, "Projector file from `nfk fit`")->required();
  cmd->add_flag("--json", f->json,
                "Print one JSON object (singular_values, eigenvalues, explained_variance_ratio, "
                "rank, method, dtype, n_examples, n_params, ...)");
  cmd->add_option("--plot", f->plot,
                  "Also draw the spectrum (sigma^2 bars, cumulative explained variance) to this "
                  ".png, .svg or .pdf file (matplotlib, through nfk's Python plotting module)");
  cmd->callback([f] {
    check_outputs({f->plot}, {f->projector});
    check_figure("--plot", f->plot);
    auto proj = load_projector(f->projector);
    auto j = proj.spectrum_json();
    if (!f->plot.empty()) plot_spectrum(f->plot, j);
    if (f->json) {
      std::printf("%s\n", j.dump().c_str());
      return;
    }
    std::printf("NFK spectrum of %s (%s, %s, %lld examples, %lld parameters)\n",
                f->projector.c_str(), j["kind"].get<std::string>().c_str(),
                j["method"].get<std::string>().c_str(), static_cast<long long>(proj.n_examples),
                static_cast<long long>(proj.n_params()));
    if (proj.profile.estimated_error >= 0 && proj.method != FitMethod::kExact) {
      char stop[64] = "no tolerance: every iteration ran";
      if (proj.svd.tol > 0) std::snprintf(stop, sizeof stop, "tolerance %.1e", proj.svd.tol);
      std::printf(
          "  SVD: %s, %lld iterations, %lld passes over V; estimated max relative error "
          "of the top-k sigma %.1e (%s)\n",
          to_string(proj.svd.solver).c_str(), static_cast<long long>(proj.profile.iterations),
          static_cast<long long>(proj.profile.passes), proj.profile.estimated_error, stop);
    }
    if (!proj.total_variance_exact) {
      std::printf(
          "  The total variance is a Hutchinson estimate from the SVD's probes, so the "
          "ratios below are estimates too (fit with --method exact for exact ones)\n");
    }
    std::printf("%5s %14s %14s %10s %10s\n", "i", "sigma", "sigma^2", "ratio", "cumulative");
    double cum = 0;
    for (int64_t i = 0; i < proj.rank(); ++i) {
      const double r = j["explained_variance_ratio"][i];
      cum += r;
      std::printf("%5lld %14.6g %14.6g %9.3f%% %9.3f%%\n", static_cast<long long>(i + 1),
                  j["singular_values"][i].get<double>(), j["eigenvalues"][i].get<double>(), 100 * r,
                  100 * cum);
    }
  });
}

}  // namespace nfk::cli

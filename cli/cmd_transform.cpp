#include <cstdio>

#include "commands.h"
#include "common.h"
#include "nfk/data.h"
#include "nfk/embed.h"
#include "nfk/output_files.h"

namespace nfk::cli {

void add_transform_command(CLI::App& app) {
  struct Flags {
    std::string projector, data, out, model;
    int64_t batch_size = 256;
    bool quiet = false;
    DeviceFlags device;
    DistFlags dist;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd = app.add_subcommand("transform", "Embed data with a fitted projector: e(x) = P^T V_x");
  cmd->add_option("--projector", f->projector, "Projector file from `nfk fit`")->required();
  cmd->add_option("--data", f->data, "Data to embed (same forms as `nfk fit --data`)")->required();
  cmd->add_option("--out", f->out, "Embeddings [N, k] as .npy")->required();
  cmd->add_option("--model", f->model,
                  "Model file if it moved since the fit (its hash must match)");
  cmd->add_option("--batch-size", f->batch_size, "Examples per batch")
      ->check(count_in(1, 1 << 20))
      ->capture_default_str();
  f->device.add_to(cmd, "Device: cpu or cuda (the fit's dtype is kept)");
  cmd->add_flag("--quiet", f->quiet, "No progress line or summary");
  f->dist.add_to(cmd);
  cmd->callback([f] {
    run_distributed(f->dist, [&](dist::Group& group) {
      const auto t0 = std::chrono::steady_clock::now();
      auto proj = load_projector(f->projector);
      check_outputs({f->out}, {f->projector, f->data, f->model, proj.model.model_path,
                               proj.model.generator_path});
      proj.model.device = f->device.apply();
      auto ds = load_dataset(f->data);
      auto model = load_projector_model(proj, f->model);
      // Every rank embeds its shard; rank 0 gathers the rows and writes them.
      ProgressLine progress("transform", f->quiet || !group.is_root());
      auto e = transform(proj, model, ds.inputs,
                         {f->batch_size, proj.model.seed, &group, progress.fn()});
      progress.finish();
      if (!group.is_root()) return;
      write_npy(f->out, e);
      if (!f->quiet) {
        std::printf("nfk transform: %lld examples -> %s [%lld, %lld] in %.1f s\n",
                    static_cast<long long>(e.size(0)), f->out.c_str(),
                    static_cast<long long>(e.size(0)), static_cast<long long>(e.size(1)),
                    seconds_since(t0));
      }
    });
  });
}

}  // namespace nfk::cli

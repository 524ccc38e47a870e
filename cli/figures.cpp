#include "figures.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "nfk/output_files.h"

extern char** environ;

namespace nfk::cli {
namespace {

namespace fs = std::filesystem;

std::string python() {
  if (const char* p = std::getenv("NFK_PYTHON"); p != nullptr && *p != '\0') return p;
  if (::access("/usr/bin/python3", X_OK) == 0) return "/usr/bin/python3";
  return "python3";
}

std::string plot_script() {
  if (const char* p = std::getenv("NFK_PLOT_SCRIPT"); p != nullptr && *p != '\0') return p;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return "";
  for (const auto& dir : {exe.parent_path(), exe.parent_path().parent_path()}) {
    const fs::path candidate = dir / "share" / "nfk" / "plot.py";
    if (fs::is_regular_file(candidate, ec)) return candidate.string();
  }
  return "";
}

// A private temporary folder, removed with this object.
class TempDir {
 public:
  TempDir() {
    std::error_code ec;
    std::string t = (fs::temp_directory_path(ec) / "nfk_figure_XXXXXX").string();
    TORCH_CHECK(!ec && ::mkdtemp(t.data()) != nullptr,
                "nfk: cannot make a temporary folder for a figure (", t,
                "): ", std::strerror(errno));
    path_ = t;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Runs argv (no shell) with stdin from /dev/null and stdout + stderr into `log`; its exit status,
// or -1 where it could not start or did not exit normally.
int run(const std::vector<std::string>& argv, const std::string& log) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int started = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (started != 0) return -1;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string last_line(const std::string& file) {
  std::ifstream in(file);
  std::string line, last;
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \t\r") != std::string::npos) last = line;
  }
  return last.empty() ? "no message" : last;
}

std::string suffix_of(const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext;
}

// Draws KIND from `data` (JSON) into `path`: the script writes the figure inside the temporary
// folder, and its bytes reach `path` through write_file_atomic (staged with the command's other
// outputs where an OutputGroup is active).
void draw(const std::string& kind, const nlohmann::json& data, const std::string& path,
          std::vector<std::string> extra = {}) {
  const std::string why = figures_unavailable();
  TORCH_CHECK(why.empty(), "nfk: cannot draw ", path, ": ", why);
  TempDir tmp;
  const std::string data_file = tmp.file(kind + ".json"),
                    figure = tmp.file("figure" + suffix_of(path));
  {
    std::ofstream out(data_file);
    out << data.dump();
    TORCH_CHECK(out.good(), "nfk: cannot draw ", path, ": writing its data to ", data_file,
                " failed");
  }
  std::vector<std::string> argv = {python(), plot_script(), kind, data_file, figure};
  argv.insert(argv.end(), extra.begin(), extra.end());
  const std::string log = tmp.file("plot.log");
  const int status = run(argv, log);
  TORCH_CHECK(status == 0 && fs::is_regular_file(figure), "nfk: cannot draw ", path, ": ",
              status == -1 ? python() + " did not run" : last_line(log));
  std::ifstream in(figure, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  write_file_atomic(path, bytes.str());
}

// A tensor as nested JSON lists (float64 values).
nlohmann::json to_json(const torch::Tensor& t) {
  auto c = t.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  std::vector<double> flat(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
  return {{"shape", c.sizes().vec()}, {"values", flat}};
}

}  // namespace

std::string figures_unavailable() {
  static const std::string why = [] {
    if (plot_script().empty()) {
      return std::string(
          "nfk's plotting module is missing (share/nfk/plot.py beside the nfk binary or in "
          "../share/nfk; or set NFK_PLOT_SCRIPT)");
    }
    TempDir tmp;
    const std::string py = python();
    const int status = run({py, "-c", "import matplotlib, numpy"}, tmp.file("probe.log"));
    if (status == 0) return std::string();
    return "figures are drawn by Python 3 with matplotlib and numpy (Debian: python3-matplotlib), "
           "and " +
           py + (status == -1 ? " does not run" : " cannot import them") +
           "; set NFK_PYTHON to a Python that can";
  }();
  return why;
}

bool pictures_possible() {
  static const bool possible = [] {
    const std::string why = figures_unavailable();
    if (!why.empty()) TORCH_WARN("nfk: no sample pictures: ", why);
    return why.empty();
  }();
  return possible;
}

void check_figure(const std::string& flag, const std::string& path) {
  if (path.empty()) return;
  const std::string ext = suffix_of(path);
  TORCH_CHECK(ext == ".png" || ext == ".svg" || ext == ".pdf", "nfk: ", flag, " ", path,
              ": name a .png, .svg or .pdf file (the suffix picks the format)");
  const std::string why = figures_unavailable();
  TORCH_CHECK(why.empty(), "nfk: ", flag, " ", path, ": ", why);
}

void plot_spectrum(const std::string& path, const nlohmann::json& spectrum) {
  draw("spectrum", spectrum, path);
}

void plot_monitor(const std::string& path, const nlohmann::json& history,
                  const std::string& title) {
  draw("monitor", history, path, {"--title", title});
}

void plot_class_distances(const std::string& path, const torch::Tensor& distances) {
  draw("class-distances", to_json(distances), path);  // plot.py labels the classes 0..C-1
}

void plot_images(const std::string& path, const torch::Tensor& images, int64_t columns) {
  draw("image-grid", to_json(images), path, {"--ncols", std::to_string(columns)});
}

}  // namespace nfk::cli

// Output writing (nfk/output_files.h) and input opening (detail/input_file): what is at a path is
// never destroyed, all-or-nothing groups, no temp file left, inputs that would block refused.
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "nfk/output_files.h"
#include "detail/input_file.h"
#include "support.h"

namespace nfk {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<std::string> names_in(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

using test::error_of;

TEST(AtomicFile, ReplacesARegularFileKeepingItsMode) {
  auto dir = test::temp_dir("atomic_mode");
  const std::string p = dir + "/a.bin";
  write_file_atomic(p, "old");
  ASSERT_EQ(::chmod(p.c_str(), 0600), 0);
  write_file_atomic(p, "new contents");
  EXPECT_EQ(slurp(p), "new contents");
  struct stat st {};
  ASSERT_EQ(::stat(p.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(names_in(dir), std::vector<std::string>{"a.bin"});
}

TEST(AtomicFile, FollowsSymlinksAndKeepsThem) {
  auto dir = test::temp_dir("atomic_link");
  std::filesystem::create_directories(dir + "/real");
  ASSERT_EQ(::symlink("real/target.bin", (dir + "/link.bin").c_str()), 0);  // dangling
  write_file_atomic(dir + "/link.bin", "first");
  EXPECT_TRUE(std::filesystem::is_symlink(dir + "/link.bin"));
  EXPECT_EQ(slurp(dir + "/real/target.bin"), "first");
  write_file_atomic(dir + "/link.bin", "second");
  EXPECT_TRUE(std::filesystem::is_symlink(dir + "/link.bin"));
  EXPECT_EQ(slurp(dir + "/real/target.bin"), "second");
  EXPECT_EQ(resolved_output_path(dir + "/link.bin"),
            std::filesystem::canonical(dir + "/real").string() + "/target.bin");
}

TEST(AtomicFile, WritesThroughCharacterDevices) {
  if (::access("/dev/null", W_OK) != 0) GTEST_SKIP() << "no writable /dev/null";
  check_writable("/dev/null");
  write_file_atomic("/dev/null", "discarded");
  struct stat st {};
  ASSERT_EQ(::stat("/dev/null", &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  if (::access("/dev/full", W_OK) == 0) {
    EXPECT_NE(error_of([] { write_file_atomic("/dev/full", "x"); }).find("No space"),
              std::string::npos);
  }
}

TEST(AtomicFile, RefusesDirectoriesAndLeavesNothingBehind) {
  auto dir = test::temp_dir("atomic_dir");
  std::filesystem::create_directories(dir + "/sub");
  EXPECT_NE(error_of([&] { write_file_atomic(dir + "/sub", "x"); }).find("a directory"),
            std::string::npos);
  EXPECT_NE(error_of([&] { check_writable(dir + "/missing/x"); }).find("No such file"),
            std::string::npos);
  check_writable(dir + "/new.bin");
  EXPECT_EQ(names_in(dir), std::vector<std::string>{"sub"});
}

TEST(AtomicFile, TakesTheLongestFileNames) {
  auto dir = test::temp_dir("atomic_long");
  const std::string name(255, 'n');
  check_writable(dir + "/" + name);
  write_file_atomic(dir + "/" + name, "ok");
  EXPECT_EQ(slurp(dir + "/" + name), "ok");
}

TEST(AtomicFile, AGroupWritesAllOrNothing) {
  auto dir = test::temp_dir("atomic_group");
  const std::string a = dir + "/a.bin", b = dir + "/b.bin";
  write_file_atomic(a, "old a");
  {  // the second write fails: the first one's old content stays
    OutputGroup outputs;
    write_file_atomic(a, "new a");
    EXPECT_EQ(slurp(a), "old a");  // staged, not yet visible
    EXPECT_THROW(write_file_atomic(dir + "/missing/b.bin", "b"), c10::Error);
  }
  EXPECT_EQ(slurp(a), "old a");
  EXPECT_EQ(names_in(dir), std::vector<std::string>{"a.bin"});
  {  // destroyed without commit (an error in between): nothing appears
    OutputGroup outputs;
    write_file_atomic(b, "b");
  }
  EXPECT_EQ(names_in(dir), std::vector<std::string>{"a.bin"});
  {
    OutputGroup outputs;
    write_file_atomic(a, "new a");
    write_file_atomic(b, "new b");
    outputs.commit();
  }
  EXPECT_EQ(slurp(a), "new a");
  EXPECT_EQ(slurp(b), "new b");
  EXPECT_EQ(names_in(dir), (std::vector<std::string>{"a.bin", "b.bin"}));
  if (::access("/dev/full", W_OK) == 0) {  // a device that fails at commit stops the renames
    OutputGroup outputs;
    write_file_atomic(a, "newer a");
    write_file_atomic("/dev/full", "x");
    EXPECT_THROW(outputs.commit(), c10::Error);
    EXPECT_EQ(slurp(a), "new a");
  }
  EXPECT_EQ(names_in(dir), (std::vector<std::string>{"a.bin", "b.bin"}));
}

TEST(InputFile, RefusesWhatIsNotARegularFileWithoutBlocking) {
  auto dir = test::temp_dir("input_kinds");
  const std::string fifo = dir + "/fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // No writer: a blocking open would hang here.
  EXPECT_NE(error_of([&] { detail::read_input_file(fifo, "data"); }).find("FIFO"),
            std::string::npos);
  EXPECT_NE(error_of([&] { detail::check_input_file(dir, "model"); }).find("a directory"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              detail::check_input_file(dir + "/nope", "model");
            }).find("cannot read model " + dir + "/nope: No such file"),
            std::string::npos);
  std::ofstream(dir + "/f.bin", std::ios::binary) << std::string("a\0b", 3);
  EXPECT_EQ(detail::read_input_file(dir + "/f.bin", "data"), std::string("a\0b", 3));
}

}  // namespace
}  // namespace nfk

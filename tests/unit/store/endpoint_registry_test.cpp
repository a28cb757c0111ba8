#include "kennel/store/endpoint_registry.h"

#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "kennel/store/layout.h"
#include "unit/test_util.h"

namespace kennel::store {
namespace {

std::string this_host() {
  char host[256] = "";
  ::gethostname(host, sizeof(host) - 1);
  return host;
}

class EndpointRegistryTest : public ::testing::Test {
 protected:
  EndpointRecord record() {
    EndpointRecord out;
    out.url = "http://127.0.0.1:8080";
    out.model = "first";
    return out;
  }
  void write(const std::string& name, const nlohmann::json& content) {
    std::filesystem::create_directories(HomeLayout(dir_.path()).endpoints());
    std::ofstream(HomeLayout(dir_.path()).endpoints() / name) << content.dump();
  }
  testing::TempDir dir_;
};

TEST_F(EndpointRegistryTest, ARegistrationLivesAsLongAsItsHandle) {
  std::filesystem::path file;
  {
    auto registration = EndpointRegistration::create(dir_.path(), record());
    ASSERT_TRUE(registration.ok()) << registration.status().to_string();
    file = registration->path();
    EXPECT_EQ(file, HomeLayout(dir_.path()).endpoint(this_host(), ::getpid()));
    const auto live = list_endpoints(dir_.path());
    ASSERT_EQ(live.size(), 1u);
    EXPECT_EQ(live[0].url, "http://127.0.0.1:8080");
    EXPECT_EQ(live[0].model, "first");
    EXPECT_EQ(live[0].pid, ::getpid());
    EXPECT_TRUE(live[0].same_host);
    EXPECT_GT(live[0].process_start, 0u);
  }
  EXPECT_FALSE(std::filesystem::exists(file));
  EXPECT_TRUE(list_endpoints(dir_.path()).empty());
}

// A server killed with SIGKILL leaves its file: it must not be listed.
TEST_F(EndpointRegistryTest, AnEndpointWhoseProcessDiedIsNotListed) {
  const pid_t child = ::fork();
  if (child == 0) {
    auto registration = EndpointRegistration::create(dir_.path(), record());
    std::_Exit(registration.ok() ? 0 : 1);  // no destructor: the file stays, as after SIGKILL
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_TRUE(std::filesystem::exists(HomeLayout(dir_.path()).endpoint(this_host(), child)));
  EXPECT_TRUE(list_endpoints(dir_.path()).empty());
}

TEST_F(EndpointRegistryTest, AReusedPidIsNotTheServerThatRegistered) {
  write("reused.json", {{"url", "http://127.0.0.1:1"},
                        {"pid", ::getpid()},
                        {"host", this_host()},
                        {"process_start", process_start_ticks(::getpid()) + 12345}});
  EXPECT_TRUE(list_endpoints(dir_.path()).empty());
}

TEST_F(EndpointRegistryTest, OtherHostsAreKeptUncheckedAndDebrisIsSkipped) {
  write("remote.json",
        {{"url", "http://10.0.0.2:8080"}, {"pid", 99999999}, {"host", "another-host"}});
  write("broken.json", {{"no", "url"}});
  std::ofstream(HomeLayout(dir_.path()).endpoints() / "garbage.json") << "{not json";
  const auto live = list_endpoints(dir_.path());
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].host, "another-host");
  EXPECT_FALSE(live[0].same_host);
}

TEST_F(EndpointRegistryTest, AHomeWithoutEndpointsListsNothing) {
  EXPECT_TRUE(list_endpoints(dir_.path() / "missing").empty());
}

}  // namespace
}  // namespace kennel::store

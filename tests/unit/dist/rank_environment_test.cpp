#include "kennel/dist/rank_environment.h"

#include <gtest/gtest.h>

namespace kennel::dist {
namespace {

RankEnvironment detect(const Environment& env) {
  auto result = detect_rank_environment(env);
  EXPECT_TRUE(result.ok()) << result.status().message();
  EXPECT_TRUE(result.ok() && result->has_value());
  return result.ok() && result->has_value() ? **result : RankEnvironment{};
}

std::string error_of(const Environment& env) {
  auto result = detect_rank_environment(env);
  EXPECT_FALSE(result.ok());
  return result.ok() ? "" : result.status().message();
}

TEST(RankEnvironmentTest, NoVariablesMeansOneProcess) {
  auto result = detect_rank_environment({{"HOME", "/root"}});
  ASSERT_TRUE(result.ok());
  EXPECT_FALSE(result->has_value());
}

TEST(RankEnvironmentTest, AWorldOfOneIsASingleProcess) {
  auto result = detect_rank_environment({{"RANK", "0"}, {"WORLD_SIZE", "1"}});
  ASSERT_TRUE(result.ok());
  EXPECT_FALSE(result->has_value());
}

TEST(RankEnvironmentTest, TorchrunWithItsAgentStore) {
  const RankEnvironment rank = detect({{"RANK", "1"},
                                       {"WORLD_SIZE", "2"},
                                       {"LOCAL_RANK", "1"},
                                       {"LOCAL_WORLD_SIZE", "2"},
                                       {"MASTER_ADDR", "10.0.0.1"},
                                       {"MASTER_PORT", "29600"},
                                       {"TORCHELASTIC_RUN_ID", "none"},
                                       {"TORCHELASTIC_RESTART_COUNT", "3"},
                                       {"TORCHELASTIC_USE_AGENT_STORE", "True"}});
  EXPECT_EQ(rank.rank, 1);
  EXPECT_EQ(rank.world_size, 2);
  EXPECT_EQ(rank.local_rank, 1);
  EXPECT_EQ(rank.local_world_size, 2);
  EXPECT_EQ(rank.master_addr, "10.0.0.1");
  EXPECT_EQ(rank.master_port, 29600);
  EXPECT_EQ(rank.launcher, "torchrun");
  EXPECT_TRUE(rank.agent_store);
  EXPECT_EQ(rank.restart_count, 3);
  EXPECT_EQ(rank.store_prefix, "/worker/attempt_3");
}

TEST(RankEnvironmentTest, KennelsLauncherIsNamedAndHostsItsOwnStore) {
  const RankEnvironment rank = detect({{"RANK", "0"},
                                       {"WORLD_SIZE", "2"},
                                       {"MASTER_PORT", "29501"},
                                       {"KENNEL_LAUNCHER", "1"},
                                       {"KENNEL_CPUS_PER_RANK", "1"}});
  EXPECT_EQ(rank.launcher, "kennel");
  EXPECT_FALSE(rank.agent_store);
  EXPECT_EQ(rank.store_prefix, "");
  EXPECT_EQ(rank.cpus_per_task, 1);
  EXPECT_EQ(rank.master_addr, "127.0.0.1");
}

TEST(RankEnvironmentTest, SrunTasksWithACompressedNodeList) {
  const RankEnvironment rank = detect({{"SLURM_PROCID", "3"},
                                       {"SLURM_NTASKS", "4"},
                                       {"SLURM_STEP_ID", "0"},
                                       {"SLURM_LOCALID", "1"},
                                       {"SLURM_STEP_TASKS_PER_NODE", "2(x2)"},
                                       {"SLURM_CPUS_PER_TASK", "8"},
                                       {"SLURM_JOB_NODELIST", "gpu[07-08],login1"},
                                       {"SLURM_JOB_ID", "123456"}});
  EXPECT_EQ(rank.launcher, "slurm");
  EXPECT_EQ(rank.rank, 3);
  EXPECT_EQ(rank.world_size, 4);
  EXPECT_EQ(rank.local_rank, 1);
  EXPECT_EQ(rank.local_world_size, 2);
  EXPECT_EQ(rank.cpus_per_task, 8);
  EXPECT_EQ(rank.master_addr, "gpu07");
  EXPECT_EQ(rank.master_port, slurm_master_port(123456));
}

TEST(RankEnvironmentTest, EveryTaskOfASlurmJobDerivesTheSamePortOutsideTheEphemeralRange) {
  for (int64_t job : {1, 14999, 15000, 987654321}) {
    const int port = slurm_master_port(job);
    EXPECT_GE(port, 1024);
    EXPECT_LT(port, 32768);
    EXPECT_EQ(port, slurm_master_port(job));
  }
  EXPECT_NE(slurm_master_port(100), slurm_master_port(101));
}

TEST(RankEnvironmentTest, AnSbatchScriptIsNotARank) {
  auto result = detect_rank_environment(
      {{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_JOB_NODELIST", "n1"}, {"SLURM_JOB_ID", "5"}});
  ASSERT_TRUE(result.ok());
  EXPECT_FALSE(result->has_value());
}

TEST(RankEnvironmentTest, TorchrunInsideSlurmIsTorchrun) {
  const RankEnvironment rank = detect({{"RANK", "0"},
                                       {"WORLD_SIZE", "2"},
                                       {"SLURM_PROCID", "0"},
                                       {"SLURM_NTASKS", "1"},
                                       {"SLURM_STEP_ID", "0"},
                                       {"TORCHELASTIC_RUN_ID", "x"}});
  EXPECT_EQ(rank.launcher, "torchrun");
  EXPECT_EQ(rank.world_size, 2);
}

TEST(RankEnvironmentTest, MasterAddrAndPortOverrideSlurmsDerivation) {
  const RankEnvironment rank = detect({{"SLURM_PROCID", "0"},
                                       {"SLURM_NTASKS", "2"},
                                       {"SLURM_STEP_ID", "0"},
                                       {"SLURM_JOB_NODELIST", "n[1-2]"},
                                       {"SLURM_JOB_ID", "7"},
                                       {"MASTER_ADDR", "head"},
                                       {"MASTER_PORT", "40000"}});
  EXPECT_EQ(rank.master_addr, "head");
  EXPECT_EQ(rank.master_port, 40000);
}

TEST(RankEnvironmentTest, BadValuesNameTheVariable) {
  EXPECT_NE(error_of({{"RANK", "x"}, {"WORLD_SIZE", "2"}}).find("RANK='x'"), std::string::npos);
  EXPECT_NE(error_of({{"RANK", "0"}, {"WORLD_SIZE", "0"}}).find("WORLD_SIZE=0"), std::string::npos);
  EXPECT_NE(error_of({{"RANK", "2"}, {"WORLD_SIZE", "2"}}).find("outside the world"), std::string::npos);
  EXPECT_NE(error_of({{"WORLD_SIZE", "2"}}).find("RANK"), std::string::npos);
  EXPECT_NE(error_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "70000"}}).find("MASTER_PORT"),
            std::string::npos);
  EXPECT_NE(error_of({{"SLURM_PROCID", "0"},
                      {"SLURM_NTASKS", "2"},
                      {"SLURM_STEP_ID", "0"},
                      {"SLURM_JOB_ID", "7"},
                      {"SLURM_JOB_NODELIST", "n[1-"}})
                .find("SLURM_JOB_NODELIST"),
            std::string::npos);
}

TEST(SlurmNodelistTest, ExpandsAsScontrolShowHostnamesDoes) {
  auto hosts = expand_slurm_nodelist("n[01-04]");
  ASSERT_TRUE(hosts.ok());
  EXPECT_EQ(*hosts, (std::vector<std::string>{"n01", "n02", "n03", "n04"}));
  hosts = expand_slurm_nodelist("a1,b[1,3-4],c[8-10]");
  ASSERT_TRUE(hosts.ok());
  EXPECT_EQ(*hosts, (std::vector<std::string>{"a1", "b1", "b3", "b4", "c8", "c9", "c10"}));
  hosts = expand_slurm_nodelist("rack[1-2]-n[1,2]");
  ASSERT_TRUE(hosts.ok());
  EXPECT_EQ(*hosts, (std::vector<std::string>{"rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"}));
  hosts = expand_slurm_nodelist("node-007");
  ASSERT_TRUE(hosts.ok());
  EXPECT_EQ(*hosts, (std::vector<std::string>{"node-007"}));
}

TEST(SlurmNodelistTest, MalformedListsAreErrors) {
  for (const char* bad : {"", "n[1-2", "n1-2]", "n[a-b]", "n[4-1]", "a,,b", "n[]"}) {
    EXPECT_FALSE(expand_slurm_nodelist(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace kennel::dist

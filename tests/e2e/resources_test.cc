// Resources: every call for lever://env/svc/<resource>/method lands on one
// instance, while different resources spread over the instances.
#include <map>
#include <set>

#include <gtest/gtest.h>

#include "harness.h"
#include "lever/json.h"

namespace lever::e2e {
namespace {

int ReadyInstances(Leverd& leverd) {
  CommandResult ps = leverd.Lever({"--json", "ps"});
  Value v;
  if (ps.exit_code != 0 || !ParseJson(ps.out, &v).ok() || !v.is_map()) return 0;
  const Value* instances = v.as_map().Find("instances");
  int ready = 0;
  if (instances && instances->is_array()) {
    for (const Value& i : instances->as_array()) {
      const Value* state = i.as_map().Find("state");
      const Value* svc = i.as_map().Find("service");
      if (state && *state == Value("ready") && svc && *svc == Value("ressvc")) ++ready;
    }
  }
  return ready;
}

TEST(ResourcesTest, EachResourceStaysOnOneInstance) {
  Leverd leverd;
  leverd.Start();
  ASSERT_EQ(leverd.DeployTestService(R"({"name":"ressvc","minInstances":3})").exit_code, 0);
  // minInstances: the host keeps three instances up without any call.
  ASSERT_TRUE(WaitUntil([&] { return ReadyInstances(leverd) == 3; }, std::chrono::seconds(30)));
  auto client = leverd.NewClient();
  std::map<std::string, std::string> owner;  // resource -> instance
  for (int round = 0; round < 3; ++round) {
    for (int r = 0; r < 24; ++r) {
      std::string resource = "user/" + std::to_string(r);  // resources may hold '/'
      Result w = client->Resource("dev.lever", "ressvc", resource).Invoke("Whoami", {});
      ASSERT_TRUE(w.ok()) << w.status.ToString();
      EXPECT_EQ(*w.value.as_map().Find("resource"), Value(resource));
      std::string instance = w.value.as_map().Find("instance")->as_string();
      auto [it, inserted] = owner.emplace(resource, instance);
      EXPECT_EQ(it->second, instance) << resource << " moved between instances";
    }
  }
  std::set<std::string> used;
  for (const auto& [r, i] : owner) used.insert(i);
  EXPECT_GE(used.size(), 2u) << "24 resources all landed on one of 3 instances";
}

}  // namespace
}  // namespace lever::e2e

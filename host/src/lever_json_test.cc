#include "lever/host/lever_json.h"

#include <gtest/gtest.h>

namespace lever::host {
namespace {

TEST(LeverJson, DefaultsApplied) {
  LeverConfig c;
  ASSERT_TRUE(ParseLeverConfig(R"({"name":"hello"})", &c).ok());
  EXPECT_EQ(c.name, "hello");
  EXPECT_EQ(c.entry, std::vector<std::string>{"./serve"});
  EXPECT_EQ(c.js_entry, "");
  EXPECT_EQ(c.py_entry, "");
  EXPECT_FALSE(c.is_private);
  EXPECT_DOUBLE_EQ(c.max_instance_load, 10.0);
  EXPECT_EQ(c.min_instances, 0);
  EXPECT_EQ(c.ram_mb, 50);
}

TEST(LeverJson, KeysMatchCaseInsensitively) {
  LeverConfig c;
  Status s = ParseLeverConfig(
      R"({"NAME":"svc1","Description":"d","JSENTRY":"index.js","Private":true,
          "maxinstanceload":2.5,"MININSTANCES":3,"RAM":128})",
      &c);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(c.name, "svc1");
  EXPECT_EQ(c.description, "d");
  EXPECT_EQ(c.js_entry, "index.js");
  EXPECT_TRUE(c.entry.empty());
  EXPECT_TRUE(c.is_private);
  EXPECT_DOUBLE_EQ(c.max_instance_load, 2.5);
  EXPECT_EQ(c.min_instances, 3);
  EXPECT_EQ(c.ram_mb, 128);
}

TEST(LeverJson, TrailingDataAndUnknownFieldsIgnored) {
  LeverConfig c;
  Status s = ParseLeverConfig(R"({"name":"abc","entry":["./run","x"],"unknown":{"a":[1]},"config":{}} trailing {garbage)", &c);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(c.entry, (std::vector<std::string>{"./run", "x"}));
}

TEST(LeverJson, NonPositiveValuesDefault) {
  LeverConfig c;
  ASSERT_TRUE(ParseLeverConfig(R"({"name":"abc","maxInstanceLoad":0,"ram":-5,"minInstances":-1})", &c).ok());
  EXPECT_DOUBLE_EQ(c.max_instance_load, 10.0);
  EXPECT_EQ(c.ram_mb, 50);
  EXPECT_EQ(c.min_instances, 0);
}

TEST(LeverJson, BothEntriesIsAnError) {
  LeverConfig c;
  Status s = ParseLeverConfig(R"({"name":"abc","entry":["./x"],"jsEntry":"a.js"})", &c);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_EQ(s.message(), "More than one type of entry point specified");
}

TEST(LeverJson, RuntimeIsProcessOrDocker) {
  LeverConfig c;
  ASSERT_TRUE(ParseLeverConfig(R"({"name":"abc"})", &c).ok());
  EXPECT_EQ(c.runtime, "");
  ASSERT_TRUE(ParseLeverConfig(R"({"name":"abc","Runtime":"docker"})", &c).ok());
  EXPECT_EQ(c.runtime, "docker");
  ASSERT_TRUE(ParseLeverConfig(R"({"name":"abc","runtime":"process"})", &c).ok());
  EXPECT_EQ(c.runtime, "process");
  Status s = ParseLeverConfig(R"({"name":"abc","runtime":"vm"})", &c);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_EQ(s.message(), "Error trying to read lever.json: runtime must be \"process\" or \"docker\"");
  EXPECT_EQ(ParseLeverConfig(R"({"name":"abc","runtime":1})", &c).code(), Code::kInvalidArgument);
}

TEST(LeverJson, PyEntry) {
  LeverConfig c;
  ASSERT_TRUE(ParseLeverConfig(R"({"name":"hello","PYENTRY":"server.py"})", &c).ok());
  EXPECT_EQ(c.py_entry, "server.py");
  EXPECT_TRUE(c.entry.empty());
  EXPECT_EQ(c.js_entry, "");
  for (const char* text : {R"({"name":"abc","entry":["./x"],"pyEntry":"a.py"})",
                           R"({"name":"abc","jsEntry":"a.js","pyEntry":"a.py"})"}) {
    Status s = ParseLeverConfig(text, &c);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << text;
    EXPECT_EQ(s.message(), "More than one type of entry point specified") << text;
  }
  EXPECT_EQ(ParseLeverConfig(R"({"name":"abc","pyEntry":["a.py"]})", &c).message(),
            "Error trying to read lever.json: pyEntry must be a string");
}

TEST(LeverJson, NameRequiredAndValidated) {
  LeverConfig c;
  EXPECT_EQ(ParseLeverConfig(R"({"description":"x"})", &c).message(), "Invalid service name");
  EXPECT_EQ(ParseLeverConfig(R"({"name":"ab"})", &c).message(), "Invalid service name");
  EXPECT_EQ(ParseLeverConfig(R"({"name":"a/b/c"})", &c).message(), "Invalid service name");
  EXPECT_EQ(ParseLeverConfig(R"({"name":"a b c"})", &c).message(), "Invalid service name");
  EXPECT_TRUE(ParseLeverConfig(R"({"name":"A-z_0.9~"})", &c).ok());
}

TEST(LeverJson, BadJsonAndWrongTypes) {
  LeverConfig c;
  Status s = ParseLeverConfig("{\"name\":", &c);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_EQ(s.message().rfind("Error trying to read lever.json", 0), 0u) << s.message();
  EXPECT_FALSE(ParseLeverConfig(R"(["name"])", &c).ok());
  EXPECT_FALSE(ParseLeverConfig(R"({"name":5})", &c).ok());
  EXPECT_FALSE(ParseLeverConfig(R"({"name":"abc","entry":"./serve"})", &c).ok());
  EXPECT_FALSE(ParseLeverConfig(R"({"name":"abc","ram":1.5})", &c).ok());
  EXPECT_FALSE(ParseLeverConfig(R"({"name":"abc","private":"yes"})", &c).ok());
}

TEST(Names, EnvAndServiceRules) {
  EXPECT_TRUE(IsValidEnvName("dev.lever"));
  EXPECT_FALSE(IsValidEnvName("ab"));
  EXPECT_FALSE(IsValidEnvName("a/b.lever"));
  EXPECT_FALSE(IsValidEnvName("dev lever"));
  EXPECT_TRUE(IsValidServiceName(std::string(255, 'a')));
  EXPECT_FALSE(IsValidServiceName(std::string(256, 'a')));
}

}  // namespace
}  // namespace lever::host

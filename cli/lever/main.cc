// lever: the command-line client (reference §9, with its gaps filled).
//
// Exit codes (docs/cli.md): 0 success; 1 the service answered with an
// application error; 2 usage error (bad flags, bad JSON argument, bad URL);
// 3 platform error (cannot connect, not found, permission, limits, deadline).
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/data_dir.h"
#include "common/duration.h"
#include "lever/admin/admin_api.h"
#include "lever/client.h"
#include "lever/json.h"
#include "lever/url.h"
#include "raw_args.h"
#include "tarball.h"

#ifndef LEVER_VERSION
#define LEVER_VERSION "dev"
#endif

namespace lever::cli {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitAppError = 1;
constexpr int kExitUsage = 2;
constexpr int kExitPlatform = 3;

struct Globals {
  std::string env = "dev.lever";
  std::string host = "127.0.0.1:8080";
  std::string timeout = "60s";
  bool json = false;
  bool pretty = false;
  std::chrono::milliseconds timeout_ms{60000};
  std::string data_dir;     // where a local leverd keeps admin.token
  std::string admin_token;  // sent on admin calls; "" for none
};

// A leverd on this machine: loopback TCP or a unix socket.
bool IsLocalHost(const std::string& host) {
  return host.rfind("unix:", 0) == 0 || host.rfind("127.", 0) == 0 || host.rfind("localhost:", 0) == 0 ||
         host.rfind("[::1]:", 0) == 0;
}

// The admin token (docs/cli.md): $LEVER_ADMIN_TOKEN, else the first line of
// <data dir>/admin.token when leverd is local and the file is readable (a
// local file's token is never sent to another machine).
std::string FindAdminToken(const Globals& g) {
  if (const char* t = std::getenv("LEVER_ADMIN_TOKEN"); t && *t) return t;
  if (!IsLocalHost(g.host)) return "";
  std::ifstream in(g.data_dir + "/admin.token");
  std::string line;
  if (!in || !std::getline(in, line)) return "";
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
  return line.size() <= 256 ? line : "";
}

std::string ToJson(const Value& v, bool pretty) {
  JsonWriteOptions o;
  o.indent = pretty ? 2 : 0;
  o.bytes_as_base64 = true;
  o.nonfinite_as_null = true;
  std::string s;
  (void)WriteJson(v, &s, o);
  return s;
}

int Fail(const Globals& g, int code, std::string_view kind, const Status& s) {
  if (g.json) {
    Map err{{"kind", std::string(kind)}, {"code", std::string(CodeName(s.code()))}, {"message", s.message()}};
    std::cout << ToJson(Value(Map{{"error", Value(std::move(err))}}), false) << std::endl;
  } else {
    std::cerr << "lever: " << s.ToString() << std::endl;
  }
  return code;
}

int Usage(const Globals& g, std::string message) {
  return Fail(g, kExitUsage, "usage", InvalidArgument(std::move(message)));
}

// Prints one result value: bytes raw, anything else as a JSON line.
void PrintValue(const Globals& g, const Value& v) {
  if (v.is_bytes() && !g.json) {
    std::fwrite(v.as_bytes().data().data(), 1, v.as_bytes().size(), stdout);
    std::fflush(stdout);
    return;
  }
  std::string line = ToJson(v, g.pretty);
  line.push_back('\n');
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
}

// Reports a call that did not return a value; returns the exit code.
int Report(const Globals& g, const Result& r) {
  if (r.is_app_error()) {
    if (g.json) {
      std::cout << ToJson(Value(Map{{"error", Map{{"kind", "application"}, {"value", r.value}}}}), false)
                << std::endl;
    } else {
      std::cerr << "lever: remote error: "
                << (r.value.is_string() ? r.value.as_string() : ToJson(r.value, false)) << std::endl;
    }
    return kExitAppError;
  }
  Status s = r.status;
  if (s.code() == Code::kUnavailable && s.message().find("onnect") != std::string::npos) {
    s = Status(s.code(), "cannot reach leverd at " + g.host + " (is it running? `lever up`): " + s.message());
  }
  if (s.code() == Code::kPermissionDenied && s.message().find("lever-admin-token") != std::string::npos) {
    s = Status(s.code(), s.message() + "; lever sends $LEVER_ADMIN_TOKEN, or the admin.token of a local leverd's " +
                             "--data-dir (" + g.data_dir + ")");
  }
  return Fail(g, kExitPlatform, "platform", s);
}

// Resolves a Lever URL against --env.
Status ResolveUrl(const Globals& g, const std::string& text, Url* out) {
  Status s = ParseUrl(text, out);
  if (!s.ok()) return s;
  if (out->env.empty()) out->env = g.env;
  return Status::Ok();
}

ClientOptions ClientOptionsFor(const Globals& g) {
  ClientOptions o;
  o.force_host = g.host;
  return o;
}

Client MakeClient(const Globals& g) { return Client(ClientOptionsFor(g)); }

CallOptions MakeCallOptions(const Globals& g) {
  CallOptions o;
  o.timeout = g.timeout_ms;
  return o;
}

// A call to the admin service carries the token when there is one; no other
// call does (user services never see it).
CallOptions WithAdminToken(const Globals& g, CallOptions o) {
  if (!g.admin_token.empty()) o.metadata.emplace_back("lever-admin-token", g.admin_token);
  return o;
}
CallOptions ForUrl(const Globals& g, const Url& url, CallOptions o) {
  return url.env == admin::kEnv ? WithAdminToken(g, std::move(o)) : o;
}

Status ParseArgs(const std::vector<std::string>& texts, Array* out) {
  for (size_t i = 0; i < texts.size(); ++i) {
    Value v;
    Status s = ParseJson(texts[i], &v);
    if (!s.ok()) {
      return InvalidArgument("argument " + std::to_string(i + 1) + " is not JSON (" + s.message() +
                             "); quote strings twice, e.g. '\"world\"'");
    }
    out->push_back(std::move(v));
  }
  return Status::Ok();
}

std::string ReadAll(FILE* f) {
  std::string data;
  char buf[64 * 1024];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) data.append(buf, n);
  return data;
}

// ---- invoke ---------------------------------------------------------------

int Invoke(const Globals& g, const std::string& url_text, const std::vector<std::string>& arg_texts,
           bool bytes) {
  Url url;
  Status s = ResolveUrl(g, url_text, &url);
  if (!s.ok()) return Usage(g, s.message());
  if (IsChanMethod(url.method)) return Usage(g, "use `lever stream` for streaming methods");
  Array args;
  if (bytes) {
    if (!arg_texts.empty()) return Usage(g, "--bytes sends stdin as the only argument; drop the JSON arguments");
    args.push_back(Value::FromBytes(ReadAll(stdin)));
  } else if (s = ParseArgs(arg_texts, &args); !s.ok()) {
    return Usage(g, s.message());
  }
  Client client = MakeClient(g);
  Result r = client.InvokeUrl(url.ToString(), std::move(args), ForUrl(g, url, MakeCallOptions(g)));
  if (!r.ok()) return Report(g, r);
  PrintValue(g, r.value);
  return kExitOk;
}

// ---- stream ---------------------------------------------------------------

int Stream(const Globals& g, const std::string& url_text, const std::vector<std::string>& arg_texts, bool bytes) {
  Url url;
  Status s = ResolveUrl(g, url_text, &url);
  if (!s.ok()) return Usage(g, s.message());
  if (!IsChanMethod(url.method)) return Usage(g, "use `lever invoke` for non-streaming methods");
  Array args;
  if (s = ParseArgs(arg_texts, &args); !s.ok()) return Usage(g, s.message());
  // The sender below may outlive this function (it can block on stdin after
  // the server has ended the call): it holds its own references.
  auto client = std::make_shared<Client>(ClientOptionsFor(g));
  CallOptions options;  // a stream lives as long as it is used: no deadline unless --timeout is given
  if (g.timeout != "60s") options.timeout = g.timeout_ms;
  ClientStreamPtr stream;
  s = client->InvokeStreamUrl(&stream, url.ToString(), std::move(args), ForUrl(g, url, options));
  if (!s.ok()) return Fail(g, kExitPlatform, "platform", s);

  // stdin → messages on their own thread; replies → stdout here.
  std::thread sender([client, stream, bytes] {
    if (bytes) {
      std::vector<char> buf(admin::kChunkSize);
      size_t n;
      while ((n = std::fread(buf.data(), 1, buf.size(), stdin)) > 0) {
        if (!stream->Send(Value::FromBytes(std::string(buf.data(), n))).ok()) return;
      }
    } else {
      std::string line;
      while (std::getline(std::cin, line)) {
        if (line.empty()) continue;
        Value v;
        Status ps = ParseJson(line, &v);
        if (!ps.ok()) {
          std::cerr << "lever: skipping a line that is not JSON: " << ps.message() << std::endl;
          continue;
        }
        if (!stream->Send(v).ok()) return;
      }
    }
    stream->CloseSend();
  });
  sender.detach();  // it may block on stdin after the server has ended the call
  for (;;) {
    Result r = stream->Receive();
    if (r.ok()) {
      PrintValue(g, r.value);
      continue;
    }
    if (r.is_end()) return kExitOk;
    return Report(g, r);
  }
}

// ---- deploy ---------------------------------------------------------------

std::string HumanBytes(size_t n) {
  char buf[32];
  if (n >= (1 << 20)) {
    std::snprintf(buf, sizeof buf, "%.1f MiB", n / 1048576.0);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f KiB", n / 1024.0);
  }
  return buf;
}

int Deploy(const Globals& g, const std::string& dir, const std::string& admin_env) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return Usage(g, dir + " is not a directory");
  if (!std::filesystem::exists(std::filesystem::path(dir) / "lever.json", ec)) {
    return Usage(g, "no lever.json in " + dir);
  }
  std::string archive;
  Status s = PackDirectory(dir, admin::kMaxUploadSize, &archive);
  if (!s.ok()) return Fail(g, s.code() == Code::kInvalidArgument ? kExitUsage : kExitPlatform, "deploy", s);

  Client client = MakeClient(g);
  Url url(admin_env, std::string(admin::kService), "", std::string(admin::kDeploy));
  ClientStreamPtr stream;
  s = client.InvokeStreamUrl(&stream, url.ToString(),
                             Array{g.env, Map{{"reportVersion", true}, {"reportSteps", true}}},
                             WithAdminToken(g, MakeCallOptions(g)));
  if (!s.ok()) return Fail(g, kExitPlatform, "platform", s);

  bool tty = isatty(STDERR_FILENO) && !g.json;
  auto progress = [&](size_t sent) {
    if (!tty) return;
    int width = 30;
    int filled = archive.empty() ? width : static_cast<int>(width * sent / archive.size());
    std::fprintf(stderr, "\rUploading [%s%s] %s / %s", std::string(filled, '#').c_str(),
                 std::string(width - filled, ' ').c_str(), HumanBytes(sent).c_str(),
                 HumanBytes(archive.size()).c_str());
    std::fflush(stderr);
  };
  size_t sent = 0;
  while (sent < archive.size()) {
    size_t n = std::min(admin::kChunkSize, archive.size() - sent);
    // A failed send means the server ended the call: its reason comes below.
    if (!stream->Send(Value::FromBytes(archive.substr(sent, n))).ok()) break;
    sent += n;
    progress(sent);
  }
  if (tty) std::fputc('\n', stderr);
  stream->CloseSend();
  // The steps as the server reports them: the upload is committed (service
  // and version), the new version starts, it is switched to.
  Value info;
  std::string name = dir;
  for (;;) {
    Result r = stream->Receive();
    if (!r.ok()) {
      if (!r.is_end()) return Report(g, r);
      break;
    }
    if (!r.value.is_map()) continue;
    const Map& m = r.value.as_map();
    const Value* step = m.Find("step");
    const Value* version = m.Find("version");
    std::string v = version ? ToJson(*version, false) : "?";
    if (!step) {
      info = r.value;
      if (const Value* n = m.Find("service"); n && n->is_string()) name = n->as_string();
      if (!g.json) std::cerr << "Uploaded " << name << " as version " << v << std::endl;
    } else if (!g.json && *step == Value("starting")) {
      std::cerr << "Starting " << name << " v" << v << std::endl;
    } else if (!g.json && *step == Value("switched")) {
      std::cerr << "Switched " << g.env << "/" << name << " to v" << v << std::endl;
    }
  }
  if (g.json) {
    Map out{{"env", g.env}};
    if (info.is_map()) {
      for (const auto& [k, v] : info.as_map()) out.Set(k, v);
    }
    std::cout << ToJson(Value(std::move(out)), g.pretty) << std::endl;
  } else if (info.is_map() && info.as_map().Find("version")) {
    std::cout << "Deployed " << name << " to " << g.env << " as version " << ToJson(*info.as_map().Find("version"), false)
              << std::endl;
  } else {
    std::cout << "Deployed " << dir << " to " << g.env << std::endl;
  }
  return kExitOk;
}

// ---- admin calls ------------------------------------------------------------

int AdminCall(const Globals& g, std::string_view method, Array args, Value* out) {
  Client client = MakeClient(g);
  Url url(std::string(admin::kEnv), std::string(admin::kService), "", std::string(method));
  Result r = client.InvokeUrl(url.ToString(), std::move(args), WithAdminToken(g, MakeCallOptions(g)));
  if (!r.ok()) return Report(g, r);
  *out = std::move(r.value);
  return kExitOk;
}

std::string Field(const Value& row, std::string_view key) {
  if (!row.is_map()) return "";
  const Value* v = row.as_map().Find(key);
  if (!v || v->is_null()) return "";
  return v->is_string() ? v->as_string() : ToJson(*v, false);
}

// Prints rows as an aligned table with the given columns (or JSON).
void PrintTable(const Globals& g, const Value& rows, const std::vector<std::pair<std::string, std::string>>& cols) {
  if (g.json) {
    std::cout << ToJson(rows, g.pretty) << std::endl;
    return;
  }
  std::vector<std::vector<std::string>> cells;
  std::vector<size_t> width;
  for (const auto& c : cols) width.push_back(c.second.size());
  if (rows.is_array()) {
    for (const Value& row : rows.as_array()) {
      std::vector<std::string> line;
      for (size_t i = 0; i < cols.size(); ++i) {
        line.push_back(Field(row, cols[i].first));
        width[i] = std::max(width[i], line.back().size());
      }
      cells.push_back(std::move(line));
    }
  }
  auto print = [&](const std::vector<std::string>& line) {
    std::string out;
    for (size_t i = 0; i < line.size(); ++i) {
      out += line[i];
      if (i + 1 < line.size()) out += std::string(width[i] - line[i].size() + 2, ' ');
    }
    std::cout << out << '\n';
  };
  std::vector<std::string> header;
  for (const auto& c : cols) header.push_back(c.second);
  print(header);
  for (const auto& line : cells) print(line);
  std::cout.flush();
}

// `lever ps`: each instance's resources in a column of bounded width: the
// first three, then "+N".
Value WithResourceSummary(const Value& instances) {
  if (!instances.is_array()) return instances;
  Array rows;
  for (const Value& row : instances.as_array()) {
    Value copy = row;
    const Value* res = row.is_map() ? row.as_map().Find("resources") : nullptr;
    std::string text;
    if (res && res->is_array()) {
      const Array& names = res->as_array();
      for (size_t i = 0; i < names.size() && i < 3; ++i) {
        text += (i ? "," : "") + (names[i].is_string() ? names[i].as_string() : ToJson(names[i], false));
      }
      if (names.size() > 3) text += " +" + std::to_string(names.size() - 3);
    }
    if (copy.is_map()) {
      copy.as_map().Set("resourceSummary", text.empty() ? "-" : text);
      // Another node's instance: its pid and start time are not known here
      // (the JSON keeps leverd's 0 and epoch; the table says "-").
      const Value* pid = row.as_map().Find("pid");
      if (pid && pid->is_number() && pid->ToDouble() == 0) copy.as_map().Set("pid", "-");
      const Value* started = row.as_map().Find("startedAt");
      if (started && started->is_string() && started->as_string().rfind("1970-", 0) == 0) {
        copy.as_map().Set("startedAt", "-");
      }
    }
    rows.push_back(std::move(copy));
  }
  return Value(std::move(rows));
}

int Logs(const Globals& g, const std::string& service, bool follow, int lines) {
  Client client = MakeClient(g);
  Url url(std::string(admin::kEnv), std::string(admin::kService), "", std::string(admin::kLogs));
  ClientStreamPtr stream;
  CallOptions options;
  if (!follow) options.timeout = g.timeout_ms;
  Status s = client.InvokeStreamUrl(&stream, url.ToString(),
                                    Array{g.env, service, Map{{"follow", follow}, {"lines", lines}}},
                                    WithAdminToken(g, options));
  if (!s.ok()) return Fail(g, kExitPlatform, "platform", s);
  stream->CloseSend();
  for (;;) {
    Result r = stream->Receive();
    if (r.ok()) {
      if (g.json || !r.value.is_string()) {
        PrintValue(g, r.value);
      } else {
        std::cout << r.value.as_string() << std::endl;
      }
      continue;
    }
    return r.is_end() ? kExitOk : Report(g, r);
  }
}

// `lever up`: leverd in the foreground, found next to this binary.
int Up(const Globals& g, bool data_dir_given, std::vector<std::string> extra) {
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  std::filesystem::path leverd = self.parent_path() / "leverd";
  if (ec || !std::filesystem::exists(leverd)) return Usage(g, "cannot find leverd next to " + self.string());
  std::vector<std::string> argv = {leverd.string()};
  bool has_listen = false, has_data_dir = false;
  for (const auto& e : extra) {
    has_listen |= e.rfind("--listen", 0) == 0;
    has_data_dir |= e.rfind("--data-dir", 0) == 0;
  }
  // `lever --data-dir D up` (or `lever up --data-dir D`): leverd's data dir.
  if (data_dir_given && !has_data_dir) {
    argv.push_back("--data-dir");
    argv.push_back(g.data_dir);
  }
  if (!has_listen && g.host.rfind("unix:", 0) != 0) {
    argv.push_back("--listen");
    argv.push_back(g.host);
  }
  argv.insert(argv.end(), extra.begin(), extra.end());
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  execv(cargv[0], cargv.data());
  return Fail(g, kExitPlatform, "platform", Status(Code::kInternal, std::string("exec leverd: ") + strerror(errno)));
}

int Main(int argc, char** argv) {
  CLI::App app{"lever: deploy and call Lever services"};
  app.set_version_flag("--version", std::string("lever ") + LEVER_VERSION);
  app.require_subcommand(1);
  app.fallthrough();
  Globals g;
  if (const char* e = std::getenv("LEVEROS_ENV"); e && *e) g.env = e;
  if (const char* h = std::getenv("LEVEROS_IP_PORT"); h && *h) g.host = h;
  app.add_option("-E,--env", g.env, "Environment of relative URLs and deploys (LEVEROS_ENV)")
      ->capture_default_str();
  app.add_option("-H,--host", g.host, "leverd address, host:port or unix:/path (LEVEROS_IP_PORT)")
      ->capture_default_str();
  app.add_option("--timeout", g.timeout, "Deadline of each call: 500ms, 30s, 5m; 0 for none")->capture_default_str();
  app.add_flag("--json", g.json, "Machine-readable JSON output (results, tables, errors)");
  g.data_dir = DefaultDataDir();
  CLI::Option* data_dir_opt = app.add_option("--data-dir", g.data_dir,
                 "A local leverd's data dir, whose admin.token admin calls send ($LEVER_DATA_DIR, else "
                 "leverd's default); $LEVER_ADMIN_TOKEN wins")
      ->capture_default_str();

  std::string url;
  std::vector<std::string> args;
  bool bytes = false;

  auto* invoke = app.add_subcommand("invoke", "Call a method and print its result");
  invoke->add_option("url", url, "lever://env/service[/resource]/method, or /service/method in --env")->required();
  // The JSON arguments (and leverd's flags after `up`) are taken as written
  // by TakeRawArgs below; these declarations only document them in --help.
  invoke->add_option("args", args, "JSON arguments, each one value as written, e.g. '\"world\"' 42 '[1,2]'");
  invoke->add_flag("--bytes", bytes, "Send stdin as one bytes argument");
  invoke->add_flag("--pretty", g.pretty, "Indent the JSON result");

  auto* stream = app.add_subcommand("stream", "Open a streaming call: stdin lines in, reply lines out");
  stream->add_option("url", url, "URL of a streaming method (name ending in Chan)")->required();
  stream->add_option("args", args, "JSON arguments of the call, each one value as written");
  stream->add_flag("--bytes", bytes, "Send stdin as raw byte messages instead of JSON lines");
  stream->add_flag("--pretty", g.pretty, "Indent JSON messages");

  std::string dir = ".";
  std::string admin_env(admin::kEnv);
  auto* deploy = app.add_subcommand("deploy", "Upload a service directory (with lever.json) to --env");
  deploy->add_option("dir", dir, "Service directory")->capture_default_str();
  deploy->add_option("--admin", admin_env, "Admin environment")->capture_default_str();

  auto* env = app.add_subcommand("env", "Manage environments");
  env->require_subcommand(1);
  std::string env_name, env_desc;
  auto* env_create = env->add_subcommand("create", "Create an environment");
  env_create->add_option("name", env_name, "Name, ending in .lever to be routable")->required();
  env_create->add_option("--description", env_desc, "Description");
  auto* env_list = env->add_subcommand("list", "List environments");
  auto* env_delete = env->add_subcommand("delete", "Delete an environment and its services");
  env_delete->add_option("name", env_name, "Name")->required();

  auto* ps = app.add_subcommand("ps", "List services and their instances");
  bool all_envs = false;
  ps->add_flag("-a,--all", all_envs, "All environments, not only --env");

  std::string service;
  bool follow = false;
  int lines = 100;
  auto* logs = app.add_subcommand("logs", "Show a service's instance output");
  logs->add_option("service", service, "Service name")->required();
  logs->add_flag("-f,--follow", follow, "Keep printing new lines");
  logs->add_option("-n,--lines", lines, "Lines of history")->capture_default_str();

  std::vector<std::string> up_args;
  auto* up = app.add_subcommand("up", "Run leverd in the foreground (flags after -- go to leverd)");
  up->add_option("leverd-args", up_args, "Flags for leverd, e.g. -- --data-dir /tmp/lever");
  up->allow_extras();

  RawArgs raw = TakeRawArgs(app, {{invoke, 1}, {stream, 1}, {up, 0, true}}, argc, argv);
  std::vector<const char*> cli_argv;
  for (const auto& a : raw.argv) cli_argv.push_back(a.c_str());
  try {
    app.parse(static_cast<int>(cli_argv.size()), cli_argv.data());
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  if (!ParseDuration(g.timeout, &g.timeout_ms)) return Usage(g, "bad --timeout " + g.timeout);
  g.admin_token = FindAdminToken(g);

  if (*invoke) return Invoke(g, url, raw.raw, bytes);
  if (*stream) return Stream(g, url, raw.raw, bytes);
  if (*deploy) return Deploy(g, dir, admin_env);
  if (*up) return Up(g, data_dir_opt->count() > 0, raw.raw);
  Value out;
  if (*env_create) {
    int rc = AdminCall(g, admin::kCreateEnvironment, Array{env_name, env_desc}, &out);
    if (rc == kExitOk && !g.json) std::cout << "Created " << env_name << std::endl;
    if (rc == kExitOk && g.json) std::cout << ToJson(Map{{"created", env_name}}, false) << std::endl;
    return rc;
  }
  if (*env_delete) {
    int rc = AdminCall(g, admin::kDeleteEnvironment, Array{env_name}, &out);
    if (rc == kExitOk && !g.json) std::cout << "Deleted " << env_name << std::endl;
    if (rc == kExitOk && g.json) std::cout << ToJson(Map{{"deleted", env_name}}, false) << std::endl;
    return rc;
  }
  if (*env_list) {
    int rc = AdminCall(g, admin::kListEnvironments, Array{}, &out);
    if (rc == kExitOk) PrintTable(g, out, {{"name", "NAME"}, {"description", "DESCRIPTION"}});
    return rc;
  }
  if (*ps) {
    std::string scope = all_envs ? "" : g.env;
    // One admin call, whose value is also leverd's GET /_lever/status.
    Value status;
    int rc = AdminCall(g, admin::kStatus, Array{scope}, &status);
    if (rc != kExitOk) return rc;
    if (g.json) {
      std::cout << ToJson(status, g.pretty) << std::endl;
      return kExitOk;
    }
    const Value* found = status.is_map() ? status.as_map().Find("services") : nullptr;
    Value services = found ? *found : Value(Array{});
    found = status.is_map() ? status.as_map().Find("instances") : nullptr;
    Value instances = found ? *found : Value(Array{});
    PrintTable(g, services,
               {{"env", "ENV"}, {"name", "SERVICE"}, {"liveVersion", "LIVE"}, {"desired", "DESIRED"},
                {"reason", "REASON"}, {"private", "PRIVATE"}, {"description", "DESCRIPTION"}});
    std::cout << '\n';
    found = status.is_map() ? status.as_map().Find("nodes") : nullptr;
    bool cluster = found && found->is_array() && !found->as_array().empty();
    if (!cluster) {
      PrintTable(g, WithResourceSummary(instances),
                 {{"env", "ENV"}, {"service", "SERVICE"}, {"id", "INSTANCE"}, {"version", "VERSION"},
                  {"state", "STATE"}, {"pid", "PID"}, {"inFlight", "IN FLIGHT"}, {"startedAt", "STARTED"},
                  {"resourceSummary", "RESOURCES"}});
      return kExitOk;
    }
    // A cluster (docs/cluster.md): which node each instance runs on, and the nodes.
    PrintTable(g, WithResourceSummary(instances),
               {{"env", "ENV"}, {"service", "SERVICE"}, {"id", "INSTANCE"}, {"node", "NODE"}, {"version", "VERSION"},
                {"state", "STATE"}, {"pid", "PID"}, {"inFlight", "IN FLIGHT"}, {"startedAt", "STARTED"},
                {"resourceSummary", "RESOURCES"}});
    std::cout << '\n';
    PrintTable(g, *found,
               {{"name", "NODE"}, {"address", "PEER ADDRESS"}, {"health", "HEALTH"}, {"instances", "INSTANCES"}});
    return kExitOk;
  }
  if (*logs) return Logs(g, service, follow, lines);
  return kExitUsage;
}

}  // namespace
}  // namespace lever::cli

int main(int argc, char** argv) {
  int rc = lever::cli::Main(argc, argv);
  std::fflush(stdout);
  // A `lever stream` sender thread may still block on stdin: leave without
  // running static destructors under it.
  std::_Exit(rc);
}

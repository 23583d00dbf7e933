// The admin service built into leverd, addressed as the original's:
// lever://admin.lever/admin//<Method>. DeployServiceChan is exactly the
// original's (reference §5.3); the rest are Lever additions for the CLI.
#pragma once

#include <string_view>

namespace lever::admin {

inline constexpr std::string_view kEnv = "admin.lever";
inline constexpr std::string_view kService = "admin";

// DeployServiceChan(env [, options]): the client sends the gzip tar of the
// code directory as byte messages (32 KiB chunks), half-closes, and reads:
// EOF once the new version is live, an error message on failure (a bad
// upload, or a version that failed to start: its last output lines; the old
// version stays live). With a second argument {"reportVersion": true} the
// server sends {"service": name, "version": N} once the upload is committed;
// with {"reportSteps": true} also {"step": "starting", "version": N} then
// {"step": "switched", "version": N}; the original client sends one
// argument and gets only the EOF it expects.
inline constexpr std::string_view kDeploy = "DeployServiceChan";
// ListEnvironments() -> [{"name", "description"}]
inline constexpr std::string_view kListEnvironments = "ListEnvironments";
// CreateEnvironment(name [, description]) -> null
inline constexpr std::string_view kCreateEnvironment = "CreateEnvironment";
// DeleteEnvironment(name) -> null (dev.lever and admin.lever cannot go)
inline constexpr std::string_view kDeleteEnvironment = "DeleteEnvironment";
// ListServices(env or "" for all) -> [{"env","name","description","private","liveVersion",
//                                      "desired","reason","waiting"[,"rolloutVersion"]}]
inline constexpr std::string_view kListServices = "ListServices";
// ListInstances(env or "" for all) -> [{"env","service","id","version","pid","state",
//                                       "inFlight","startedAt","resources"}]
inline constexpr std::string_view kListInstances = "ListInstances";
// Status(env or "" for all) -> {"services": ListServices rows, "instances":
// ListInstances rows}: `lever ps --json`, and leverd's GET /_lever/status.
inline constexpr std::string_view kStatus = "Status";
// LogsChan(env, service, {"follow": bool, "lines": N}): log lines as string
// messages; ends after the tail unless following.
inline constexpr std::string_view kLogs = "LogsChan";

// Deploy limits shared by client and server.
inline constexpr size_t kChunkSize = 32 * 1024;
inline constexpr size_t kMaxUploadSize = 30 * 1024 * 1024;

}  // namespace lever::admin
